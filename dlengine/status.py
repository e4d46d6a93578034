"""Job status objects: AIStore's fields plus dlengine's own (SPEC §2)."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from typing import Any

from dlengine.ledger import jobs


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def summary(row: sqlite3.Row) -> dict[str, Any]:
    """The counters of one job, straight from its row (cheap)."""
    finished = row["done_cnt"] + row["skipped_cnt"]
    return {
        "id": row["id"],
        "type": row["type"],
        "description": row["description"],
        "bucket": {"name": row["bucket"], "provider": row["provider"], "namespace": row["namespace"]},
        "state": row["state"],
        "aborted": row["state"] == "aborted",
        "error": row["error"],
        "created_time": iso(row["created_time"]),
        "started_time": iso(row["started_time"]),
        "finished_time": iso(row["finished_time"]),
        "total": row["total"],
        "scheduled_cnt": row["scheduled_cnt"],
        "pending_cnt": row["pending_cnt"],
        "running_cnt": row["running_cnt"],
        "finished_cnt": finished,
        "done_cnt": row["done_cnt"],
        "skipped_cnt": row["skipped_cnt"],
        "error_cnt": row["failed_cnt"],
        "aborted_cnt": row["aborted_cnt"],
        "all_dispatched": bool(row["all_dispatched"]),
        "bytes_done": row["bytes_done"],
        "bytes_total": row["bytes_total"],
        "limits": {"connections": row["conns"], "bytes_per_hour": row["bytes_per_hour"]},
        "timeout": row["timeout"],
    }


def full(conn: sqlite3.Connection, row: sqlite3.Row, *, tasks_limit: int = 1000) -> dict[str, Any]:
    """Summary plus current tasks, finished tasks and errors."""
    status = summary(row)
    seq = row["seq"]
    current = jobs.current_tasks(conn, seq)
    status["current_tasks"] = [
        {"name": r["name"], "downloaded": r["bytes_done"], "total": r["size"] or 0, "start_time": iso(r["start_time"])}
        for r in current
    ]
    # bytes of objects in flight count as done for progress
    status["bytes_done"] += sum(r["bytes_done"] for r in current)
    status["finished_tasks"] = [
        {
            "name": r["name"],
            "size": r["size"],
            "skipped": r["state"] == "skipped",
            "start_time": iso(r["start_time"]),
            "end_time": iso(r["end_time"]),
        }
        for r in jobs.finished_objects(conn, seq, tasks_limit)
    ]
    status["download_errors"] = [
        {"name": r["name"], "link": r["link"], "error": r["error"], "code": r["error_code"]}
        for r in jobs.failed_objects(conn, seq, tasks_limit)
    ]
    # dlengine's own: every failed object counted by ErrorCode ("" = unknown)
    status["errors_by_code"] = jobs.failures_by_code(conn, seq)
    status["spec"] = json.loads(row["spec"])
    return status

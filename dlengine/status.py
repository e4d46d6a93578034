"""Job status objects: AIStore's fields plus dlengine's own (SPEC §2).

AIStore's fields have its Go types (ext/dload/api.go), so its clients
decode them: counters are integers, times RFC 3339 strings (or null), and
in task lists ``downloaded`` and ``total`` are strings of digits, because
AIStore's ``TaskDlInfo`` declares them ``json:",string"``.

Links, errors and the spec go through ``redact``: a status (CLI, API) never
shows a signed link's signature, token or password.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from dlengine.ledger.ledger import Ledger
from dlengine.ledger.models import JobRecord
from dlengine.redact import redact


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _hide(text: str | None) -> str | None:
    return redact(text) if text else text


def summary(job: JobRecord) -> dict[str, Any]:
    """The counters of one job, straight from its record (cheap)."""
    return {
        "id": job.id,
        "xaction_id": job.id,  # AIStore's downloader xaction; here every job is its own
        "type": job.type,
        "description": _hide(job.description),
        "bucket": {"name": job.bucket, "provider": job.provider, "namespace": job.namespace},
        "state": job.state,
        "aborted": job.state == "aborted",
        "error": _hide(job.error),
        "created_time": iso(job.created_time),
        "started_time": iso(job.started_time),
        "finished_time": iso(job.finished_time),
        "total": job.total,
        "scheduled_cnt": job.scheduled_cnt,
        "pending_cnt": job.pending_cnt,
        "running_cnt": job.running_cnt,
        "finished_cnt": job.done_cnt + job.skipped_cnt,
        "done_cnt": job.done_cnt,
        "skipped_cnt": job.skipped_cnt,
        "error_cnt": job.failed_cnt,
        "aborted_cnt": job.aborted_cnt,
        "all_dispatched": job.all_dispatched,
        "bytes_done": job.bytes_done,
        "bytes_total": job.bytes_total,
        "limits": {"connections": job.conns, "bytes_per_hour": job.bytes_per_hour},
        "timeout": job.timeout,
    }


def _task(name: str, downloaded: int, total: int | None, start: float | None, end: float | None) -> dict[str, Any]:
    """AIStore's ``TaskDlInfo``: byte counts as strings (``json:",string"``)."""
    return {
        "name": name,
        "downloaded": str(downloaded),
        "total": str(total or 0),
        "start_time": iso(start),
        "end_time": iso(end),
    }


def full(ledger: Ledger, job: JobRecord, *, tasks_limit: int = 1000) -> dict[str, Any]:
    """Summary plus current tasks, finished tasks and errors."""
    status = summary(job)
    current = ledger.objects(job.seq, ("running",), 100)
    status["current_tasks"] = [_task(o.name, o.bytes_done, o.size, o.start_time, None) for o in current]
    # bytes of objects in flight count as done for progress
    status["bytes_done"] += sum(o.bytes_done for o in current)
    status["finished_tasks"] = [
        {
            **_task(o.name, o.size or 0, o.size, o.start_time, o.end_time),
            "size": o.size,
            "skipped": o.state == "skipped",
        }
        for o in ledger.objects(job.seq, ("done", "skipped"), tasks_limit, newest_first=True)
    ]
    status["download_errors"] = [
        {"name": o.name, "link": _hide(o.link), "error": _hide(o.error), "code": o.error_code}
        for o in ledger.objects(job.seq, ("failed",), tasks_limit)
    ]
    # dlengine's own: every failed object counted by ErrorCode ("" = unknown)
    status["errors_by_code"] = ledger.failures_by_code(job.seq)
    status["spec"] = json.loads(redact(job.spec))
    return status

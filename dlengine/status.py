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
from typing import Any, TypedDict

from dlengine.ledger.ledger import Ledger
from dlengine.ledger.models import JobRecord
from dlengine.redact import redact


class BucketInfo(TypedDict):
    name: str
    provider: str
    namespace: str


class LimitsInfo(TypedDict):
    connections: int
    bytes_per_hour: int


class JobSummary(TypedDict):
    """A job's counters (AIStore's ``DlStatusResp`` without its lists)."""

    id: str
    xaction_id: str
    type: str
    description: str | None
    bucket: BucketInfo
    state: str
    aborted: bool
    error: str | None
    created_time: str | None
    started_time: str | None
    finished_time: str | None
    total: int
    scheduled_cnt: int
    pending_cnt: int
    running_cnt: int
    finished_cnt: int
    done_cnt: int
    skipped_cnt: int
    error_cnt: int
    aborted_cnt: int
    all_dispatched: bool
    bytes_done: int
    bytes_total: int
    limits: LimitsInfo
    timeout: float


class TaskInfo(TypedDict):
    """AIStore's ``TaskDlInfo``: byte counts as strings (``json:",string"``)."""

    name: str
    downloaded: str
    total: str
    start_time: str | None
    end_time: str | None


class FinishedTask(TaskInfo):
    size: int | None
    skipped: bool


class DownloadError(TypedDict):
    name: str
    link: str | None
    error: str | None
    code: str | None


class _Spec(TypedDict, total=False):
    spec: dict[str, Any]  # the job's JSON column, as submitted (redacted); left out of show --json and the API


class JobStatus(JobSummary, _Spec):
    """The summary plus the lists ``full`` adds."""

    current_tasks: list[TaskInfo]
    finished_tasks: list[FinishedTask]
    download_errors: list[DownloadError]
    errors_by_code: dict[str, int]


class ShownStatus(JobStatus):
    """A status with where its objects are stored (``Client.status``): the
    JSON ``show`` and the API answer."""

    destination: list[str]


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _hide(text: str | None) -> str | None:
    return redact(text) if text else text


def summary(job: JobRecord) -> JobSummary:
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


def _task(name: str, downloaded: int, total: int | None, start: float | None, end: float | None) -> TaskInfo:
    """AIStore's ``TaskDlInfo``: byte counts as strings (``json:",string"``)."""
    return {
        "name": name,
        "downloaded": str(downloaded),
        "total": str(total or 0),
        "start_time": iso(start),
        "end_time": iso(end),
    }


def full(ledger: Ledger, job: JobRecord, *, tasks_limit: int = 1000) -> JobStatus:
    """Summary plus current tasks, finished tasks and errors."""
    current = ledger.objects(job.seq, ("running",), 100)
    status: JobStatus = {
        **summary(job),
        "current_tasks": [_task(o.name, o.bytes_done, o.size, o.start_time, None) for o in current],
        "finished_tasks": [
            {
                **_task(o.name, o.size or 0, o.size, o.start_time, o.end_time),
                "size": o.size,
                "skipped": o.state == "skipped",
            }
            for o in ledger.objects(job.seq, ("done", "skipped"), tasks_limit, newest_first=True)
        ],
        "download_errors": [
            {"name": o.name, "link": _hide(o.link), "error": _hide(o.error), "code": o.error_code}
            for o in ledger.objects(job.seq, ("failed",), tasks_limit)
        ],
        # dlengine's own: every failed object counted by ErrorCode ("" = unknown)
        "errors_by_code": ledger.failures_by_code(job.seq),
        "spec": json.loads(redact(job.spec)),
    }
    # bytes of objects in flight count as done for progress
    status["bytes_done"] += sum(o.bytes_done for o in current)
    return status

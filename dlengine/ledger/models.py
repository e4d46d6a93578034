"""Rows that cross the ledger boundary: claimed tasks and their outcomes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from dlengine import records
from dlengine.errors import ErrorCode
from dlengine.ledger.states import JobState, ObjectState
from dlengine.records import frozen

_Row = TypeVar("_Row")


@frozen
class NewJob:
    """A job as submission records it (its objects come separately, lazily).
    ``spec`` is the canonical JSON of the request, never its secrets."""

    id: str
    type: str
    description: str
    provider: str
    namespace: str
    bucket: str
    spec: str
    conns: int = 0
    bytes_per_hour: int = 0
    timeout: float = 0.0


@frozen
class StoredInfo:
    """What the catalog knows of a stored object (for skip decisions)."""

    size: int
    etag: str | None
    version: str | None
    checksum: str | None
    last_modified: str | None
    source: str
    stored_time: float | None = None  # when it was recorded: the file's mtime is not later


@frozen
class Task:
    """One claimed object, everything a worker needs to download it."""

    id: int
    job_id: str
    job_seq: int
    name: str
    link: str
    mountpath_id: int
    attempts: int
    provider: str
    namespace: str
    bucket: str
    timeout: float
    bytes_per_hour: int
    stored: StoredInfo | None = None
    job_type: str = ""
    # what a listing said of the object (backend jobs), before any request
    size: int | None = None
    etag: str | None = None
    version: str | None = None
    checksum: str | None = None  # "algo:hex"
    connections: int = 0  # the job's connection limit (0: none)
    deaths: int = 0  # times a worker died holding it (> 0: claimed alone, ``claims.claim``)


@frozen
class NewObject:
    """An object row to insert with what a listing said of it. ``state``
    is pending, or already skipped (unchanged) or failed (unusable name)."""

    name: str
    link: str
    size: int | None = None
    etag: str | None = None
    version: str | None = None
    checksum: str | None = None  # "algo:hex"
    last_modified: str | None = None
    state: ObjectState = ObjectState.PENDING
    error: str | None = None
    code: ErrorCode | None = None  # why it failed, with ``error``


@frozen
class Outcome:
    """What happened to a task; reported to the ledger in batches."""

    task_id: int
    state: ObjectState
    size: int | None = None
    etag: str | None = None
    version: str | None = None
    checksum: str | None = None
    last_modified: str | None = None
    error: str | None = None  # the message, for people
    code: ErrorCode | None = None  # the kind, for grouping and advice
    next_try: float = 0.0  # for a retry: when the row may be claimed again
    mountpath: str = ""  # where the object was stored (done only)
    fatal: bool = False  # the error stops the whole job
    release: bool = False  # give the row back without counting an attempt


@frozen
class JobRecord:
    """One row of ``jobs`` as the ledger hands it out (never a raw row)."""

    seq: int
    id: str
    type: str
    description: str
    provider: str
    namespace: str
    bucket: str
    spec: str  # canonical JSON (``spec.dump_spec``), never secrets
    state: str
    error: str | None
    conns: int
    bytes_per_hour: int
    timeout: float
    created_time: float
    started_time: float | None
    finished_time: float | None
    all_dispatched: bool
    total: int
    scheduled_cnt: int
    cursor: str | None
    pending_cnt: int
    running_cnt: int
    done_cnt: int
    skipped_cnt: int
    failed_cnt: int
    aborted_cnt: int
    bytes_done: int
    bytes_total: int

    @property
    def ended(self) -> bool:
        """Finished or aborted, with no download still stopping."""
        return self.state in (JobState.FINISHED.value, JobState.ABORTED.value) and self.running_cnt == 0

    @property
    def unfinished(self) -> bool:
        """Ended with objects that are not done or skipped (exit code 1)."""
        return self.state == JobState.ABORTED.value or self.failed_cnt > 0 or self.aborted_cnt > 0


@frozen
class CatalogEntry:
    """What a bucket holds: one object of the catalog."""

    provider: str
    namespace: str
    bucket: str
    name: str
    size: int
    mountpath: str  # a directory, or a cloud bucket's URI (write-through)
    source: str  # the link it came from
    etag: str | None
    version: str | None
    checksum: str | None
    last_modified: str | None
    stored_time: float
    job_id: str | None


@frozen
class ObjectRow:
    """One object of a job as status shows it."""

    id: int
    name: str
    link: str
    state: str
    size: int | None
    bytes_done: int
    error: str | None
    error_code: str | None
    start_time: float | None
    end_time: float | None
    mountpath: int


def build_rows(cls: type[_Row], rows: Iterable[tuple[Any, ...]]) -> list[_Row]:
    """Instances of the frozen dataclass ``cls`` from their field values in
    field order, without ``__init__``: a frozen ``__init__`` sets every
    field through ``object.__setattr__``, twice as slow as this for a
    ``Task`` (what ``pickle`` does too). For the thousands of rows of a
    Dask claim or result; no defaults, no ``__post_init__``."""
    names = records.names(cls)
    new, set_ = object.__new__, object.__setattr__
    built = []
    for row in rows:
        obj = new(cls)
        set_(obj, "__dict__", dict(zip(names, row, strict=True)))
        built.append(obj)
    return built

"""Rows that cross the ledger boundary: claimed tasks and their outcomes."""

from __future__ import annotations

from dataclasses import dataclass

from dlengine.errors import ErrorCode
from dlengine.ledger.states import ObjectState


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class StoredInfo:
    """What the catalog knows of a stored object (for skip decisions)."""

    size: int
    etag: str | None
    version: str | None
    checksum: str | None
    last_modified: str | None
    source: str


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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

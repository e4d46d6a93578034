"""One object, as every executor runs it: ``run_task(task, context)``.

The local worker processes and the Dask executor call this same function, so
a Task becomes an Outcome the same way everywhere: resolve the source, skip
what the destination already holds, ``transfer.fetch``, and turn every
exception into data (transient → pending with a backoff, permanent →
failed, fatal → failed and the job stops). It never touches the ledger.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dlengine import errors, throttle, transfer
from dlengine.cancel import Flag
from dlengine.ledger.models import Outcome, Task
from dlengine.ledger.states import ObjectState
from dlengine.records import field, mutable
from dlengine.sources.base import Source
from dlengine.supervisor.retry import backoff

if TYPE_CHECKING:
    from dlengine.storage import remote

__all__ = ["Context", "Result", "run_task"]

log = logging.getLogger("dlengine.work")

Result = tuple[Outcome, "str | None"]
"""An outcome and the path of the file it installed, if any (made durable,
with its directory entry, before the outcome is reported): a string, as
pathlib's parsing of it cost ~5 µs of every object."""


def _never() -> bool:
    return False


@mutable
class Context:
    """Everything but the task that one download needs. The plain fields
    cross process boundaries (Dask pickles them); the hooks are set where
    the download runs."""

    workdir: Path  # the mountpath, or a scratch directory on a Dask worker
    headers: dict[str, str]
    timeout: float = 60.0
    chunk_size: int = 1 << 20
    fsync: bool = True
    drop_cache: bool = False  # a large object's pages leave the page cache as they are written out
    # a new small file's descriptor kept open for the sync thread, which drops
    # its pages through it after the batch's sync (``durable.hold``, ``let_go``)
    hold_files: bool = False
    # the work directory, listed after the row was claimed, has no .meta of
    # it (no earlier attempt's bytes): the transfer looks for none
    no_meta: bool = False
    max_attempts: int = 5
    pool_size: int = 16
    cancel: Flag | None = None
    progress: transfer.Progress | None = None
    throttle: transfer.Throttle | None = None
    stopping: Callable[[], bool] = field(default=_never)  # cancelled to stop, not aborted
    hold: Callable[[int, bytes], None] | None = None  # small objects' bytes kept in memory (``transfer.Job.hold``)


def run_task(task: Task, ctx: Context) -> Result:
    """Download one object; never raises (errors are outcomes)."""
    # imported here: a worker whose objects all go through the libcurl loop
    # never loads the SDK sources (start-up time)
    from dlengine.sources import registry
    from dlengine.storage import remote

    try:
        source, key = registry.resolve(task.link, pool_size=ctx.pool_size)
        target = remote.target_for(task)
        if target is not None:
            held = already_stored(task, target, source, key, ctx)
            if held is not None:
                return held, None
        return transfer.fetch(task, transfer_job(task, ctx, source, key, target))
    except BaseException as exc:  # noqa: BLE001 - errors are data here
        return failure(task, exc, ctx), None


def transfer_job(
    task: Task, ctx: Context, source: Source | None, key: str, target: remote.CloudBucket | None
) -> transfer.Job:
    """What ``transfer`` needs for ``task`` (``source`` None: the bytes are
    pushed by the libcurl loop)."""
    return transfer.Job(
        mountpath=ctx.workdir,
        source=source,
        key=key,
        headers=ctx.headers,
        timeout=task.timeout or ctx.timeout,
        chunk_size=throttle.read_size(task.bytes_per_hour, ctx.chunk_size),
        fsync=ctx.fsync,
        drop_cache=ctx.drop_cache,
        hold_files=ctx.hold_files,
        no_meta=ctx.no_meta,
        cancel=ctx.cancel,
        progress=ctx.progress,
        throttle=ctx.throttle,
        remote=target,
        hold=ctx.hold,
    )


def already_stored(task: Task, target: remote.CloudBucket, source: Source, key: str, ctx: Context) -> Outcome | None:
    """A write-through object uploaded by an earlier attempt whose outcome
    never reached the ledger (a supervisor killed, a lost Dask task): its
    metadata names this source at the version the source still has (one
    HEAD each side, no GET). Only rows handed out before are checked, so a
    first attempt costs no extra request."""
    if task.attempts <= 1 and task.stored is None:
        return None
    held = target.origin(task.name)
    if not held or held.get(transfer.ORIGIN_SOURCE) != transfer.link_digest(task.link):
        return None
    info = source.stat(key, ctx.headers, task.timeout or ctx.timeout)
    if not info.etag or transfer.origin_of(task.link, info, info.size) != held:
        return None
    return Outcome(
        task.id, ObjectState.DONE, size=info.size, etag=info.etag, version=info.version,
        last_modified=info.last_modified, mountpath=target.uri,
    )  # fmt: skip


def failure(task: Task, exc: BaseException, ctx: Context) -> Outcome:
    """The outcome of a download that raised ``exc``."""
    if isinstance(exc, transfer.Aborted):
        if ctx.stopping():  # keep the work file: the next owner resumes
            return Outcome(task.id, ObjectState.PENDING, release=True)
        _drop_work(task, ctx)
        return Outcome(task.id, ObjectState.ABORTED, error="aborted", code=errors.ErrorCode.ABORTED)
    if transfer.is_disk_full(exc):
        exc = errors.DiskFullError(f"no space left on mountpath {ctx.workdir}")
    if isinstance(exc, errors.SourceRefusedError) and transfer.has_kept_bytes(ctx.workdir, task.id):
        exc = _restarting(exc)
    if isinstance(exc, errors.TransientError):
        return _transient(task, exc, ctx)
    _drop_work(task, ctx)
    if isinstance(exc, errors.FatalError):
        return Outcome(task.id, ObjectState.FAILED, error=str(exc), code=exc.code, fatal=True)
    if not isinstance(exc, errors.DlengineError | OSError):
        log.error("internal error on %s:\n%s", task.name, traceback.format_exc())
        reason = f"internal error: {type(exc).__name__}: {exc}"
        return Outcome(task.id, ObjectState.FAILED, error=reason, code=errors.ErrorCode.INTERNAL)
    return Outcome(task.id, ObjectState.FAILED, error=str(exc), code=error_code(exc))


def _restarting(exc: errors.SourceRefusedError) -> errors.TransientError:
    """A refusal from a source that had already sent bytes of this object:
    its server is restarting (a deploy, a reboot), not gone. Retried with
    the backoff, the kept bytes kept for the resume, rather than failed at
    once with the work file dropped (a large download would start over)."""
    message = f"{exc} after part of the object was received; retrying to resume"
    return errors.SourceConnectionError(message, code=errors.ErrorCode.REFUSED)


def error_code(exc: BaseException) -> errors.ErrorCode:
    """The code of an exception: its own, or what an ``OSError`` means."""
    if isinstance(exc, errors.DlengineError):
        return exc.code
    if isinstance(exc, ConnectionRefusedError | ConnectionResetError):
        return errors.ErrorCode.REFUSED
    if isinstance(exc, TimeoutError):
        return errors.ErrorCode.TIMEOUT
    if isinstance(exc, OSError):
        return errors.ErrorCode.IO
    return errors.ErrorCode.INTERNAL


def _transient(task: Task, exc: errors.TransientError, ctx: Context) -> Outcome:
    if exc.restart:
        _drop_work(task, ctx)
    if task.attempts >= ctx.max_attempts:
        _drop_work(task, ctx)
        reason = f"{exc} (gave up after {task.attempts} attempts)"
        return Outcome(task.id, ObjectState.FAILED, error=reason, code=exc.code)
    delay = retry_delay(task, exc, ctx)
    return Outcome(task.id, ObjectState.PENDING, error=str(exc), code=exc.code, next_try=time.time() + delay)


def retry_delay(task: Task, exc: errors.TransientError, ctx: Context) -> float:
    """Seconds before the next attempt: the backoff, but never longer than
    the job's timeout after a timeout. The attempt already waited that long
    (its own backoff), and a short timeout asks to fail fast: AIStore
    retries a timeout at once, so its ``TestDownloadTimeout`` sees a "1ms"
    job fail within a second (issue 14)."""
    delay = backoff(task.attempts, exc.retry_after)
    if isinstance(exc, errors.SourceTimeoutError):
        delay = min(delay, task.timeout or ctx.timeout)
    return delay


def _drop_work(task: Task, ctx: Context) -> None:
    transfer.drop_work(ctx.workdir, task.id)

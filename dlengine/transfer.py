"""One object, start to finish: the protocol every worker follows.

1. Resume from the work file if one is kept (Range + If-Range), or ask the
   source conditionally when a copy is already stored (If-None-Match).
2. Stream into ``<mountpath>/.work/<row id>.part``, hashing as it goes.
3. Verify size and checksum, fsync, rename into place. The caller fsyncs the
   directory (once per batch) before it marks the object done.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dlengine import errors
from dlengine.ledger.models import Outcome, Task
from dlengine.ledger.states import ObjectState
from dlengine.sources.base import ObjectInfo, Request, Source, Stream
from dlengine.storage import layout

Progress = Callable[[int, "int | None"], None]
Throttle = Callable[[int], None]


class Aborted(Exception):
    """The job was aborted while this object was downloading."""


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


class _Crc32:
    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes, /) -> None:
        self._value = zlib.crc32(data, self._value)

    def hexdigest(self) -> str:
        return f"{self._value:08x}"


_HASHERS: dict[str, Callable[[], Hasher]] = {
    "md5": lambda: hashlib.md5(usedforsecurity=False),
    "sha256": hashlib.sha256,
    "sha1": lambda: hashlib.sha1(usedforsecurity=False),
    "crc32": _Crc32,
}


def pick_checksum(info: ObjectInfo) -> tuple[str, str] | None:
    """The checksum we can verify for this object: (algorithm, expected hex)."""
    for algo in _HASHERS:
        if algo in info.checksums:
            return algo, info.checksums[algo]
    return None


@dataclass
class Job:
    """What a transfer needs beyond the task row."""

    mountpath: Path
    source: Source
    key: str
    headers: dict[str, str]
    timeout: float
    chunk_size: int = 1 << 20
    fsync: bool = True
    cancel: threading.Event | None = None
    progress: Progress | None = None
    throttle: Throttle | None = None


def fetch(task: Task, job: Job) -> tuple[Outcome, Path | None]:
    """Download one object into place; returns its outcome and the directory
    whose entry changed (to fsync before reporting). Raises dlengine errors,
    ``Aborted``, or OSError; the worker classifies them."""
    dest = layout.object_path(job.mountpath, task.provider, task.namespace, task.bucket, task.name)
    part, meta = layout.work_paths(job.mountpath, task.id)
    offset, validator = _resume_point(part, meta)
    stream = job.source.open(_request(task, job, dest, offset, validator))
    try:
        if stream.not_modified:
            return _skipped(task, stream.info), None
        written, hasher, check = _receive(stream, part, meta, job)
    finally:
        stream.close()
    _verify(stream.info, written, hasher, check, part, meta)
    _install(part, dest, layout.bucket_dir(job.mountpath, task.provider, task.namespace, task.bucket))
    _remove(meta)
    return _done(task, stream.info, written, check, job.mountpath), dest.parent


def _request(task: Task, job: Job, dest: Path, offset: int, validator: str | None) -> Request:
    stored = task.stored
    conditional = offset == 0 and stored is not None and stored.source == task.link and dest.exists()
    return Request(
        key=job.key,
        offset=offset,
        if_range=validator,
        if_none_match=stored.etag if conditional and stored else None,
        if_modified_since=stored.last_modified if conditional and stored and not stored.etag else None,
        headers=job.headers,
        timeout=job.timeout,
    )


def _resume_point(part: Path, meta: Path) -> tuple[int, str | None]:
    """Bytes kept from an earlier attempt, and the validator they belong to.
    Without a validator the bytes cannot be trusted: start over."""
    try:
        validator = json.loads(meta.read_text())["validator"]
        size = part.stat().st_size
    except (OSError, ValueError, KeyError, TypeError):
        return 0, None
    if not validator or size == 0:
        return 0, None
    return size, str(validator)


def _receive(stream: Stream, part: Path, meta: Path, job: Job) -> tuple[int, Hasher | None, tuple[str, str] | None]:
    check = pick_checksum(stream.info)
    hasher = _HASHERS[check[0]]() if check else None
    part.parent.mkdir(parents=True, exist_ok=True)
    mode = "r+b" if stream.offset > 0 else "wb"
    with open(part, mode) as out:
        if stream.offset > 0:
            out.truncate(stream.offset)
            _rehash(out, stream.offset, hasher)
            out.seek(stream.offset)
        _write_meta(meta, stream.info)
        written = _copy(stream, out, job, hasher, stream.offset)
        if job.fsync:
            out.flush()
            os.fsync(out.fileno())
    return written, hasher, check


def _rehash(out: Any, length: int, hasher: Hasher | None) -> None:
    """The running checksum must cover the kept prefix too."""
    if hasher is None:
        return
    out.seek(0)
    remaining = length
    while remaining > 0:
        data = out.read(min(remaining, 1 << 20))
        if not data:
            break
        hasher.update(data)
        remaining -= len(data)


def _copy(stream: Stream, out: Any, job: Job, hasher: Hasher | None, written: int) -> int:
    size = stream.info.size
    for chunk in stream.chunks(job.chunk_size):
        if job.cancel is not None and job.cancel.is_set():
            raise Aborted()
        if job.throttle is not None:
            job.throttle(len(chunk))
        out.write(chunk)
        if hasher is not None:
            hasher.update(chunk)
        written += len(chunk)
        if job.progress is not None:
            job.progress(written, size)
    return written


def _write_meta(meta: Path, info: ObjectInfo) -> None:
    # Not fsynced: if it is lost, the next attempt simply starts from zero.
    meta.write_text(json.dumps({"validator": info.validator, "size": info.size}))


def _verify(
    info: ObjectInfo, written: int, hasher: Hasher | None, check: tuple[str, str] | None, part: Path, meta: Path
) -> None:
    if info.size is not None and written != info.size:
        _remove(part, meta)
        raise errors.SizeMismatchError(f"size mismatch: expected {info.size} bytes, got {written}")
    if check and hasher and hasher.hexdigest() != check[1].lower():
        _remove(part, meta)
        raise errors.ChecksumMismatchError(
            f"checksum mismatch ({check[0]}): expected {check[1]}, got {hasher.hexdigest()}"
        )


def _install(part: Path, dest: Path, bucket_root: Path) -> None:
    layout.ensure_parent(dest, bucket_root)
    try:
        os.replace(part, dest)
    except IsADirectoryError:
        raise errors.PermanentError(f"cannot store {dest}: a directory of that name exists") from None
    except NotADirectoryError:
        raise errors.PermanentError(f"cannot store {dest}: a parent is an object, not a directory") from None


def _remove(*paths: Path) -> None:
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def _skipped(task: Task, info: ObjectInfo) -> Outcome:
    stored = task.stored
    assert stored is not None
    return Outcome(
        task_id=task.id,
        state=ObjectState.SKIPPED,
        size=stored.size,
        etag=stored.etag,
        version=stored.version,
        checksum=stored.checksum,
        last_modified=stored.last_modified,
    )


def _done(task: Task, info: ObjectInfo, size: int, check: tuple[str, str] | None, mountpath: Path) -> Outcome:
    return Outcome(
        task_id=task.id,
        state=ObjectState.DONE,
        size=size,
        etag=info.etag,
        version=info.version,
        checksum=f"{check[0]}:{check[1].lower()}" if check else None,
        last_modified=info.last_modified,
        mountpath=str(mountpath),
    )


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)

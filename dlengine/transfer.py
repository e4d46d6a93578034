"""One object, start to finish: the protocol every worker follows.

1. Resume from the work file if one is kept (Range + If-Range), or ask the
   source conditionally when a copy is already stored (If-None-Match).
2. Stream into ``<mountpath>/.work/<row id>.part``, hashing as it goes; its
   ``.meta`` says which version the bytes belong to, their checksum, and
   the work file's inode.
3. Verify size and checksum, fsync, rename into place. The caller fsyncs the
   directory (once per batch) before it marks the object done, and removes
   the ``.meta`` only then.

A kill at any point costs at most the bytes in flight: a whole work file
that was not renamed yet is confirmed by a 416 for its full size; an object
renamed but not yet recorded (its ``.meta`` outlives its ``.part`` and names
its inode) by a 304.
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
from dlengine.storage import durable, layout, space

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


class _Crc32c:
    """CRC32C (GCS, S3) through google-crc32c, installed with the gcs extra."""

    def __init__(self) -> None:
        import google_crc32c

        self._sum: Any = google_crc32c.Checksum()  # type: ignore[no-untyped-call]

    def update(self, data: bytes, /) -> None:
        self._sum.update(data)

    def hexdigest(self) -> str:
        return bytes(self._sum.digest()).hex()


try:
    import google_crc32c  # noqa: F401

    _HASHERS["crc32c"] = _Crc32c
except ImportError:
    pass


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
    remote: RemoteTarget | None = None  # a write-through bucket instead of the mountpath


class RemoteTarget(Protocol):
    """A cloud bucket that stores the objects of a job (write-through)."""

    uri: str

    def put(
        self, name: str, path: Path, checksum: tuple[str, str] | None, origin: dict[str, str] | None = None
    ) -> None: ...


ORIGIN_SOURCE = "dlengine-source"


def link_digest(link: str) -> str:
    """A link as object metadata can hold it (ASCII, short)."""
    return hashlib.sha256(link.encode()).hexdigest()[:32]


def origin_of(link: str, info: ObjectInfo, size: int | None) -> dict[str, str]:
    """What a write-through copy records of its source (as object metadata),
    so that a later attempt recognises it without fetching it again."""
    return {ORIGIN_SOURCE: link_digest(link), "dlengine-etag": info.etag or "", "dlengine-size": str(size)}


def fetch(task: Task, job: Job) -> tuple[Outcome, Path | None]:
    """Download one object into place; returns its outcome and the directory
    whose entry changed (to fsync before reporting). Raises dlengine errors,
    ``Aborted``, or OSError; the worker classifies them."""
    dest = layout.object_path(job.mountpath, task.provider, task.namespace, task.bucket, task.name)
    part, meta = layout.work_paths(job.mountpath, task.id)
    kept = _read_meta(meta, job.key)
    offset = _kept_bytes(part) if kept else 0
    placed = kept if kept and offset == 0 and _in_place(dest, kept) else None
    stream = job.source.open(_request(task, job, dest, offset, kept, placed))
    try:
        if stream.not_modified and placed:
            return _done(task, placed.info, placed.info.size or 0, placed.check, job.mountpath), dest.parent
        if stream.not_modified:
            return _skipped(task, stream.info), None
        written, hasher, check = _receive(task, stream, part, meta, job, kept)
    finally:
        stream.close()
    _verify(stream.info, written, hasher, check, part, meta)
    if job.remote is not None:  # write-through: upload the verified bytes
        job.remote.put(task.name, part, check, origin_of(task.link, stream.info, written))
        _remove(part, meta)
        return _done(task, stream.info, written, check, job.mountpath, job.remote.uri), None
    _install(part, dest, layout.bucket_dir(job.mountpath, task.provider, task.namespace, task.bucket), job.fsync)
    # the .meta stays until the ledger has recorded the outcome: see _in_place
    return _done(task, stream.info, written, check, job.mountpath), dest.parent


def _request(task: Task, job: Job, dest: Path, offset: int, kept: _Meta | None, placed: _Meta | None) -> Request:
    if_none_match, if_modified_since = _conditions(task, dest, offset, placed)
    return Request(
        key=job.key,
        offset=offset,
        if_range=kept.validator if kept and offset else None,
        if_none_match=if_none_match,
        if_modified_since=if_modified_since,
        headers=job.headers,
        timeout=job.timeout,
    )


def _conditions(task: Task, dest: Path, offset: int, placed: _Meta | None) -> tuple[str | None, str | None]:
    """(If-None-Match, If-Modified-Since): a copy in place is downloaded
    again only if the source changed."""
    stored = task.stored
    if placed is not None:
        etag, modified = placed.info.etag, placed.info.last_modified
    elif (
        offset == 0
        and stored
        and stored.source == task.link
        and layout.copy_intact(dest, stored.size, stored.stored_time)
    ):
        # only a copy still as recorded (size, mtime) may be kept by a 304
        etag, modified = stored.etag, stored.last_modified
    else:
        return None, None
    return etag, None if etag else modified


@dataclass(frozen=True)
class _Meta:
    """The .meta sidecar of a work file: the version its bytes belong to,
    the checksum they are verified with, and the work file's inode (a
    rename keeps it, so it also identifies the object once in place)."""

    validator: str
    info: ObjectInfo
    check: tuple[str, str] | None
    inode: int


def _read_meta(meta: Path, key: str) -> _Meta | None:
    """Without a validator, kept bytes cannot be trusted: start over."""
    try:
        data = json.loads(meta.read_text())
        check = data.get("checksum")
        info = ObjectInfo(key, data.get("size"), data.get("etag"), data.get("version"), data.get("last_modified"))
        pair = (str(check[0]), str(check[1])) if check else None
        kept = _Meta(str(data["validator"]), info, pair, int(data.get("inode", -1)))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return kept if data["validator"] else None


def _kept_bytes(part: Path) -> int:
    try:
        return part.stat().st_size
    except OSError:
        return 0


def _in_place(dest: Path, kept: _Meta) -> bool:
    """An earlier attempt renamed its work file into place, then died before
    the ledger recorded it. A conditional request confirms it instead of a
    second download."""
    try:
        st = dest.stat()
    except OSError:
        return False
    return st.st_ino == kept.inode and st.st_size == kept.info.size and bool(kept.info.size)


def _receive(
    task: Task, stream: Stream, part: Path, meta: Path, job: Job, kept: _Meta | None = None
) -> tuple[int, Hasher | None, tuple[str, str] | None]:
    check = pick_checksum(stream.info) or _listed_checksum(task, stream.info)
    if check is None and kept and kept.check and kept.check[0] in _HASHERS and stream.offset > 0:
        check = kept.check  # a 206 (same version) carries no Content-MD5; the first answer did
    hasher = _HASHERS[check[0]]() if check else None
    space.check_free_space(job.mountpath, None if stream.info.size is None else stream.info.size - stream.offset)
    mode = "r+b" if stream.offset > 0 else "wb"
    with _open_part(part, mode) as out:
        if stream.offset > 0:
            out.truncate(stream.offset)
            _rehash(out, stream.offset, hasher)
            out.seek(stream.offset)
        _write_meta(meta, stream.info, check, os.fstat(out.fileno()).st_ino)
        written = _copy(stream, out, job, hasher, stream.offset)
        if job.fsync:
            out.flush()
            os.fsync(out.fileno())
    return written, hasher, check


def _open_part(part: Path, mode: str) -> Any:
    """The work file; its directory is created on first use only."""
    try:
        return open(part, mode)
    except FileNotFoundError:
        part.parent.mkdir(parents=True, exist_ok=True)
        return open(part, mode)


def _listed_checksum(task: Task, info: ObjectInfo) -> tuple[str, str] | None:
    """The listing's checksum, when the answer carries none (a ranged read)
    and is the very object that was listed."""
    if not task.checksum or not task.etag or task.etag != info.etag:
        return None
    algo, _, digest = task.checksum.partition(":")
    return (algo, digest) if algo in _HASHERS and digest else None


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


def _write_meta(meta: Path, info: ObjectInfo, check: tuple[str, str] | None, inode: int) -> None:
    # Not fsynced: if it is lost, the next attempt simply starts from zero.
    fields: dict[str, object] = {"validator": info.validator, "size": info.size, "etag": info.etag}
    fields["version"] = info.version
    fields |= {"last_modified": info.last_modified, "checksum": check, "inode": inode}
    meta.write_text(json.dumps(fields))


def _verify(
    info: ObjectInfo, written: int, hasher: Hasher | None, check: tuple[str, str] | None, part: Path, meta: Path
) -> None:
    if info.size is not None and written != info.size:
        _remove(meta, part)
        raise errors.SizeMismatchError(f"size mismatch: expected {info.size} bytes, got {written}")
    if check and hasher and hasher.hexdigest() != check[1].lower():
        _remove(meta, part)
        raise errors.ChecksumMismatchError(
            f"checksum mismatch ({check[0]}): expected {check[1]}, got {hasher.hexdigest()}"
        )


def _install(part: Path, dest: Path, bucket_root: Path, fsync: bool = False) -> None:
    created = _missing_dirs(dest.parent)
    layout.ensure_parent(dest, bucket_root)
    if fsync:  # a new directory's entry must be durable too, not only the rename
        durable.fsync_dirs(d.parent for d in created)
    try:
        os.replace(part, dest)
    except IsADirectoryError:
        raise errors.PermanentError(f"cannot store {dest}: a directory of that name exists") from None
    except NotADirectoryError:
        raise errors.PermanentError(f"cannot store {dest}: a parent is an object, not a directory") from None


def _missing_dirs(path: Path) -> list[Path]:
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    return missing


def drop_work(mountpath: Path, row_id: int) -> None:
    """Remove an object's work files, the .meta first: a .meta left without
    its .part always means the .part was renamed into place (_in_place)."""
    part, meta = layout.work_paths(mountpath, row_id)
    _remove(meta, part)


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


def _done(
    task: Task, info: ObjectInfo, size: int, check: tuple[str, str] | None, mountpath: Path, stored_at: str = ""
) -> Outcome:
    return Outcome(
        task_id=task.id,
        state=ObjectState.DONE,
        size=size,
        etag=info.etag,
        version=info.version,
        checksum=f"{check[0]}:{check[1].lower()}" if check else None,
        last_modified=info.last_modified,
        mountpath=stored_at or str(mountpath),
    )


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)

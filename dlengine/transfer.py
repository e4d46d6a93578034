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
import functools
import json
import mmap
import os
import threading
import time
import zlib
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Protocol

from dlengine import errors
from dlengine.cancel import Flag
from dlengine.ledger.models import Outcome, Task
from dlengine.ledger.states import ObjectState
from dlengine.records import frozen, mutable
from dlengine.sources.base import ObjectInfo, Request, Source
from dlengine.storage import durable, layout, space

Progress = Callable[[int, "int | None"], None]
Throttle = Callable[[int], None]


MAP_EVERY_SECONDS = 0.5  # a segment map is saved at most this often ...
MAP_EVERY_BYTES = 64 << 20  # ... unless this many bytes came since the last save
_IOV_MAX = 1024  # pieces one writev takes (Linux)
# bytes held before they are written (a segment's: one pwritev; a stream's
# buffer), at most a quarter of the chunk: a kill costs at most a chunk
WRITE_BATCH = 256 << 10
PROGRESS_STEP = 256 << 10  # bytes between progress reports (the ledger hears of it once a second)


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


# hashlib imported at the first checksum: its OpenSSL start (~11 M
# instructions) is not paid by a download that verifies none
def _md5() -> Hasher:
    import hashlib

    return hashlib.md5(usedforsecurity=False)


def _sha256() -> Hasher:
    import hashlib

    return hashlib.sha256()


def _sha1() -> Hasher:
    import hashlib

    return hashlib.sha1(usedforsecurity=False)


_HASHERS: dict[str, Callable[[], Hasher]] = {"md5": _md5, "sha256": _sha256, "sha1": _sha1, "crc32": _Crc32}


class _Crc32c:
    """CRC32C (GCS, S3) through google-crc32c, installed with the gcs extra."""

    def __init__(self) -> None:
        import google_crc32c

        self._sum: Any = google_crc32c.Checksum()  # type: ignore[no-untyped-call]

    def update(self, data: bytes, /) -> None:
        self._sum.update(data)

    def hexdigest(self) -> str:
        return bytes(self._sum.digest()).hex()


if find_spec("google_crc32c") is not None:  # imported at its first use: not by every worker and command
    _HASHERS["crc32c"] = _Crc32c


def pick_checksum(info: ObjectInfo) -> tuple[str, str] | None:
    """The checksum we can verify for this object: (algorithm, expected hex)."""
    for algo in _HASHERS:
        if algo in info.checksums:
            return algo, info.checksums[algo]
    return None


@mutable
class Job:
    """What a transfer needs beyond the task row."""

    mountpath: Path
    source: Source | None  # None when the bytes are pushed (the libcurl loop)
    key: str
    headers: dict[str, str]
    timeout: float
    chunk_size: int = 1 << 20
    fsync: bool = True
    # a large object's pages leave the page cache behind its early
    # write-backs (those already hashed: a checksum computed from the file
    # reads them there), not all at the end (``worker.make_durable``)
    drop_cache: bool = False
    hold_files: bool = False  # a small object's descriptor held for its batch's sync (``durable.hold``)
    no_meta: bool = False  # its row has no .meta: none to look for (``work.Context.no_meta``)
    cancel: Flag | None = None
    progress: Progress | None = None
    throttle: Throttle | None = None
    remote: RemoteTarget | None = None  # a write-through bucket instead of the mountpath
    # a small object's verified bytes handed here (row id, bytes) instead of
    # being written and installed: its outcome then names no file (a Dask
    # batch uploads them from memory, no scratch file written and read back)
    hold: Callable[[int, bytes], None] | None = None


class RemoteTarget(Protocol):
    """A cloud bucket that stores the objects of a job (write-through)."""

    uri: str

    def put(
        self, name: str, path: Path, checksum: tuple[str, str] | None, origin: dict[str, str] | None = None
    ) -> None: ...


ORIGIN_SOURCE = "dlengine-source"


def link_digest(link: str) -> str:
    """A link as object metadata can hold it (ASCII, short)."""
    import hashlib

    return hashlib.sha256(link.encode()).hexdigest()[:32]


def origin_of(link: str, info: ObjectInfo, size: int | None) -> dict[str, str]:
    """What a write-through copy records of its source (as object metadata),
    so that a later attempt recognises it without fetching it again."""
    return {ORIGIN_SOURCE: link_digest(link), "dlengine-etag": info.etag or "", "dlengine-size": str(size)}


def fetch(task: Task, job: Job) -> tuple[Outcome, str | None]:
    """Download one object into place, pulling its bytes from the source's
    stream; returns its outcome and the path of the file it installed (made
    durable before the outcome is reported). Raises dlengine errors,
    ``Aborted``, or OSError; the worker classifies them."""
    assert job.source is not None
    receiver = Receiver(task, job)
    stream = job.source.open(receiver.request)
    try:
        held = receiver.begin(stream.info, stream.offset, stream.not_modified)
        if held is not None:
            return held
        for chunk in stream.chunks(job.chunk_size):
            receiver.write(chunk)
    except BaseException:
        receiver.close()
        raise
    finally:
        stream.close()
    return receiver.end()


class Receiver:
    """One object's work file, fed by whoever receives the bytes: ``fetch``
    pulls them from a source's stream, the libcurl loop pushes them from its
    write callback. The order is always: ``request`` (resume point and
    conditions), ``begin`` (the answer's metadata), ``write`` many times (progress,
    throttle, cancel, hashing), ``end`` (verify, install) — or ``close``
    on any failure, which keeps the work file for the next attempt.

    Objects of at most one chunk are received in memory and written with
    one call at the end: no ``.meta`` sidecar (resuming them is pointless),
    so one file created and renamed per object."""

    def __init__(self, task: Task, job: Job) -> None:
        self.task = task
        self.job = job
        # (strings, not pathlib: this is once per object, the hot path)
        self.dest = layout.object_file(job.mountpath, task.provider, task.namespace, task.bucket, task.name)
        self.part, self.meta = layout.work_files(job.mountpath, task.id)
        kept = None if job.no_meta else _read_meta(self.meta, job.key)
        # kept ranged segments resume each where it stopped, not at the
        # .part's size (which is the whole object's: it is preallocated)
        self.kept_segments = kept.segments if kept and kept.segments and os.path.exists(self.part) else None
        offset = _kept_bytes(self.part) if kept and kept.segments is None else 0
        self._kept = kept
        self._placed = kept if kept and offset == 0 and _in_place(self.dest, kept) else None
        self.request = _request(task, job, self.dest, offset, kept, self._placed)
        self.info = ObjectInfo(job.key)
        self.written = 0
        self.sidecar = kept is not None  # a .meta exists (to remove once recorded)
        self._out: Any = None
        self._buffer: list[bytes] | None = None  # the pieces of a small object (no copy until written)
        self._hasher: Hasher | None = None
        self._check: tuple[str, str] | None = None
        self.segments: list[list[int]] | None = None
        self._fd = -1
        self._in_order: _InOrder | None = None  # a segmented object's checksum, computed on a thread
        self._held: list[list[bytes]] = []  # per segment: pieces received, not written yet
        self._held_bytes: list[int] = []  # their sizes
        self._batch = max(1, min(WRITE_BATCH, job.chunk_size // 4))  # bytes written at a time
        self._stream = [0, 0, 0]  # a stream hashed on a thread: [0, bytes in the file, size]
        self._unsaved = 0  # bytes written at offsets since the segment map was saved
        self._saved_at = 0.0  # when it was (time.monotonic)
        self._flushed = 0  # bytes handed to early write-back (sequential writes)
        self._segment_flushed: dict[int, int] = {}  # the same, per segment
        self._dropped = 0  # bytes whose pages were let go (``Job.drop_cache``)
        self._segment_dropped: dict[int, int] = {}  # the same, per segment
        self._reported = 0  # bytes when progress was last handed on
        # bytes the data go straight to ``_sink`` (write and hash, in C)
        # until: progress, cancel, write-back, spill and size checks are due
        # then, not at each of libcurl's 16 KiB callbacks (~64,000 a GiB)
        self._sink: Callable[[bytes], object] | None = None
        self._slow_at = 0
        self.limit: int | None = None  # the largest object accepted (DLENGINE_MAX_OBJECT_SIZE), checked as bytes come
        # set by a loop that gets bytes in small pieces and ends aborted
        # transfers itself (engine.curl's scan): then cancel is looked at
        # only every PROGRESS_STEP here; a pulled stream looks at every chunk
        self.looked_after = False

    @property
    def ends_later(self) -> bool:
        """Whether ``end`` waits for a checksum computed on a thread (it may
        then be called from another thread: nothing else touches this
        receiver once every byte is in)."""
        return self._in_order is not None

    @property
    def validator(self) -> str | None:
        """The kept work file's validator (what its bytes belong to)."""
        return self._kept.validator if self._kept else None

    def begin(self, info: ObjectInfo, offset: int, not_modified: bool) -> tuple[Outcome, str | None] | None:
        """The source answered: an outcome if there is nothing to receive
        (not modified), else None and the work file is ready at ``offset``."""
        self.info = info
        if not_modified and self._placed:
            placed = self._placed
            outcome = _done(self.task, placed.info, placed.info.size or 0, placed.check, self.job.mountpath)
            return outcome, self.dest
        if not_modified:
            return _skipped(self.task, info), None
        kept = self._kept
        check = pick_checksum(info) or _listed_checksum(self.task, info)
        if check is None and kept and kept.check and kept.check[0] in _HASHERS and offset > 0:
            check = kept.check  # a 206 (same version) carries no Content-MD5; the first answer did
        self._check = check
        self._hasher = _HASHERS[check[0]]() if check else None
        self.written = offset
        if offset == 0 and info.size is not None and info.size <= self.job.chunk_size and self.job.remote is None:
            self._buffer = []
            self._set_sink(self._buffer.append)
            return None
        space.check_free_space(self.job.mountpath, None if info.size is None else info.size - offset)
        if offset == 0:
            self._forget_kept()
        out = _open_part(self.part, "r+b" if offset > 0 else "w+b", self._batch)  # (read too: a thread may hash it)
        self._out = out
        hasher = self._hasher
        if check is not None and hasher is not None and (info.size or 0) >= HASH_ON_THREAD:
            # hashed on a thread from the file (the kept prefix first), not in the write callback
            self._stream = [0, offset, info.size or 0]
            self._in_order = _InOrder(out.fileno(), hasher, check[0] in _MAPPABLE, [self._stream])
            self._hasher = None
        if offset > 0:
            out.truncate(offset)
            if self._hasher is not None and check is not None:  # the running checksum covers the kept prefix too
                _hash_fd(out.fileno(), offset, self._hasher, check[0] in _MAPPABLE)
            out.seek(offset)
        _write_meta(self.meta, info, check, os.fstat(out.fileno()).st_ino)
        self.sidecar = True
        self._set_sink(out.write)
        return None

    def _set_sink(self, write: Callable[[bytes], object]) -> None:
        update = self._hasher.update if self._hasher is not None else None
        if update is None:
            self._sink = write
        else:

            def sink(data: bytes) -> None:
                write(data)
                update(data)

            self._sink = sink
        self._slow_at = self._next_slow()

    def _next_slow(self) -> int:
        """Where ``write`` must next do more than write and hash."""
        job = self.job
        if job.throttle is not None or self._sink is None or not self.looked_after:
            return 0
        at = self._reported + PROGRESS_STEP  # (cancel is looked at there too)
        if self._out is not None:
            at = min(at, self._flushed + durable.WRITEBACK_EVERY)
        if self._buffer is not None:
            at = min(at, job.chunk_size + 1)
        if self.limit is not None:
            at = min(at, self.limit + 1)
        return at

    def begin_segments(self, info: ObjectInfo, bounds: list[tuple[int, int]]) -> None:
        """Receive the object as ranged segments (start, end) written at
        their offsets; a crash keeps each segment's progress in the .meta."""
        self.info = info
        self._check = pick_checksum(info) or _listed_checksum(self.task, info)
        self.segments = [[start, start, end] for start, end in bounds]
        self._hold_pieces()
        space.check_free_space(self.job.mountpath, info.size)
        self._forget_kept()
        self._open_at(info.size or 0, truncate=True)
        self._hash_in_order()

    def resume_segments(self) -> list[list[int]]:
        """Go on with the kept segments (their validator still holds: the
        caller checks every answer against it)."""
        kept = self._kept
        assert kept is not None and self.kept_segments is not None
        self.info, self._check = kept.info, kept.check
        self.segments = [list(seg) for seg in self.kept_segments]
        self._hold_pieces()
        self._open_at(kept.info.size or 0, truncate=False)
        self._hash_in_order()  # (the kept bytes first, from the file)
        return self.segments

    def _hold_pieces(self) -> None:
        count = len(self.segments or ())
        self._held = [[] for _ in range(count)]
        self._held_bytes = [0] * count

    def _hash_in_order(self) -> None:
        check, segments = self._check, self.segments
        if check is not None and segments is not None:
            mapped = check[0] in _MAPPABLE
            self._in_order = _InOrder(self._fd, _HASHERS[check[0]](), mapped, segments)

    def _open_at(self, size: int, truncate: bool) -> None:
        self._fd = _open_fd(self.part, os.O_RDWR | os.O_CREAT | (os.O_TRUNC if truncate else 0))
        if truncate:  # the space at once: a disk too small fails now, not at 90 %
            os.posix_fallocate(self._fd, 0, size)
        self._save_map()
        self.sidecar = True

    def _save_map(self) -> None:
        _write_meta(self.meta, self.info, self._check, os.fstat(self._fd).st_ino, self.segments)
        self._unsaved, self._saved_at = 0, time.monotonic()

    def left(self, index: int) -> int:
        """Bytes segment ``index`` has still to receive."""
        assert self.segments is not None
        _, pos, end = self.segments[index]
        return end - pos - self._held_bytes[index]

    def split(self, index: int) -> int | None:
        """Give the second half of what segment ``index`` has still to
        receive to a new segment, appended (its index; None when it has
        nothing left): the segment now ends at the middle, the new one runs
        from there to its old end, and the map says so (a kill resumes
        both). The new one is appended before the old one's end moves: the
        in-order hasher, reading the segments by their starts, never sees a
        gap."""
        segments = self.segments
        assert segments is not None
        seg = segments[index]
        left = self.left(index)
        if left < 2:
            return None
        middle = seg[2] - left // 2
        segments.append([middle, middle, seg[2]])
        self._held.append([])
        self._held_bytes.append(0)
        seg[2] = middle
        self._save_map()
        return len(segments) - 1

    def write_at(self, index: int, data: bytes) -> bool:
        """Bytes of segment ``index`` (past its end they are dropped); True
        once the segment is complete."""
        seg = self.segments[index]  # type: ignore[index]  # (segments are set before any write_at)
        n = len(data)
        held = self._held_bytes[index] + n
        if seg[1] + held < seg[2] and self.written + n < self._slow_at:  # the common case: held
            self._held[index].append(data)
            self._held_bytes[index] = held
            self.written += n
            if held >= self._batch:
                self._write_held(index)
            return False
        return self._write_at_checked(index, data)

    def _write_held(self, index: int) -> None:
        """Segment ``index``'s held pieces at its offset, with one pwritev
        (libcurl hands over 16 KiB a callback: one pwrite each was ~a tenth
        of a large object's CPU). Until then the map (``seg[1]``) and the
        in-order hasher do not count them; a kill loses them."""
        pieces = self._held[index]
        if not pieces:
            return
        seg = self.segments[index]  # type: ignore[index]
        total = self._held_bytes[index]
        done = os.pwritev(self._fd, pieces, seg[1]) if len(pieces) <= _IOV_MAX else 0
        if done < total:  # (a short write: the rest, as one piece)
            view = memoryview(b"".join(pieces))[done:]
            while view:
                view = view[os.pwrite(self._fd, view, seg[1] + total - len(view)) :]
        pieces.clear()
        self._held_bytes[index] = 0
        seg[1] += total
        self._unsaved += total

    def _write_at_checked(self, index: int, data: bytes) -> bool:
        job = self.job
        if job.cancel is not None and job.cancel.is_set():
            raise Aborted()
        assert self.segments is not None
        seg = self.segments[index]
        room = seg[2] - seg[1] - self._held_bytes[index]
        if room > 0 and data:
            piece = data if len(data) <= room else data[:room]
            self._held[index].append(piece)
            self._held_bytes[index] += len(piece)
            self.written += len(piece)
        self._write_held(index)
        for i, (start, pos, _) in enumerate(self.segments):
            flushed = self._segment_flushed.get(i, 0)
            if pos - start - flushed >= durable.WRITEBACK_EVERY:
                dropped = self._write_back(self._fd, start + flushed, pos, start + self._segment_dropped.get(i, 0))
                self._segment_flushed[i], self._segment_dropped[i] = pos - start, dropped - start
        if self._unsaved >= job.chunk_size and (
            self._unsaved >= MAP_EVERY_BYTES or time.monotonic() - self._saved_at >= MAP_EVERY_SECONDS
        ):  # a kill loses at most half a second's bytes (each save is a metadata write)
            self._save_map()
        if self.written - self._reported >= PROGRESS_STEP:
            self._reported = self.written
            if job.progress is not None:
                job.progress(sum(b - a for a, b, _ in self.segments), self.info.size)
        if self._in_order is not None:
            self._in_order.poke()
        # the next look: at the next progress step, or when a chunk is unsaved
        unsaved_left = job.chunk_size - self._unsaved if self._unsaved < job.chunk_size else PROGRESS_STEP
        next_look = min(self._reported + PROGRESS_STEP, self.written + unsaved_left)
        self._slow_at = next_look if self.looked_after and job.throttle is None else 0
        return seg[1] >= seg[2]

    def write(self, data: bytes) -> None:
        written = self.written + len(data)
        if written < self._slow_at:
            self._sink(data)  # type: ignore[misc]  # (set whenever _slow_at > 0)
            self.written = written
            return
        self._write_checked(data)
        self._slow_at = self._next_slow()

    def _write_checked(self, data: bytes) -> None:
        job = self.job
        if job.cancel is not None and job.cancel.is_set():
            raise Aborted()
        if job.throttle is not None:
            job.throttle(len(data))
        if self._buffer is not None:
            self._buffer.append(data)
            if self.written + len(data) > job.chunk_size:  # more than announced: stream to the file instead
                self._spill()
        else:
            self._out.write(data)
        if self._hasher is not None:
            self._hasher.update(data)
        self.written += len(data)
        if self._out is not None and self.written - self._flushed >= durable.WRITEBACK_EVERY:
            self._out.flush()
            self._dropped = self._write_back(self._out.fileno(), self._flushed, self.written, self._dropped)
            self._flushed = self.written
        if self._in_order is not None and self.written - self._stream[1] >= _HASH_STEP:
            self._out.flush()  # (the hashing thread reads the file)
            self._stream[1] = self.written
            self._in_order.poke()
        if self.written - self._reported >= PROGRESS_STEP or not self._reported:
            self._reported = self.written  # (read once a second: not at every callback of 16 KiB)
            if job.progress is not None:
                job.progress(self.written, self.info.size)
        if self.limit is not None and self.written > self.limit:
            raise errors.ObjectTooLargeError(
                f"{self.task.link}: more than the maximum object size of {self.limit} bytes"
                " (DLENGINE_MAX_OBJECT_SIZE); cut"
            )

    def _write_back(self, fd: int, flushed: int, end: int, dropped: int) -> int:
        """Early write-back of ``[flushed, end)`` (a stream's, or a
        segment's, offsets in the file), and (``Job.drop_cache``) the pages
        of ``[dropped, flushed)`` let go: bytes handed to write-back a step
        ago, by now mostly written out (pages still dirty stay, and go once
        the object is durable); with a checksum computed from the file, only
        bytes it has read. Returns where the pages let go end."""
        durable.start_writeback(fd, flushed, end - flushed)
        upto = flushed if self._in_order is None else min(flushed, self._in_order.hashed)
        if not self.job.drop_cache or upto <= dropped:
            return dropped
        durable.drop_cached(fd, dropped, upto - dropped)
        return upto

    def _forget_kept(self) -> None:
        """Starting over from zero: an earlier attempt's .meta goes before
        the work file is truncated. Kept, a kill between the two would leave
        a segment map (or a resume point) that names bytes no longer there,
        and the next attempt would resume into the emptied file."""
        if self._kept is not None:
            _remove(self.meta)
            self._kept = None

    def _spill(self) -> None:
        assert self._buffer is not None
        self._forget_kept()
        self._out = _open_part(self.part, "wb", self._batch)
        for piece in self._buffer:
            self._out.write(piece)
        self._buffer = None
        self._set_sink(self._out.write)

    def end(self) -> tuple[Outcome, str | None]:
        """All bytes received: verify, then install (or upload)."""
        task, job = self.task, self.job
        held: list[bytes] | None = None
        if self.segments is not None:
            self._end_segments()
        elif self._buffer is not None:
            held, self._buffer = self._buffer, None
        elif self._out is not None:
            out, self._out = self._out, None
            try:
                if self._in_order is not None:
                    out.flush()
                    self._stream[1:] = [self.written, self.written]
                    self._hasher = self._in_order.result()
                if job.fsync:
                    out.flush()
                    os.fsync(out.fileno())
            finally:
                self._stop_hashing()
                out.close()
        _verify(self.info, self.written, self._hasher, self._check, self.part, self.meta)
        if held is not None and job.hold is not None:
            job.hold(task.id, b"".join(held))
            return _done(task, self.info, self.written, self._check, job.mountpath), None
        if job.remote is not None:  # write-through: upload the verified bytes
            job.remote.put(task.name, Path(self.part), self._check, origin_of(task.link, self.info, self.written))
            _remove(self.part, self.meta)
            self.sidecar = False
            return _done(task, self.info, self.written, self._check, job.mountpath, job.remote.uri), None
        bucket_root = layout.bucket_root(job.mountpath, task.provider, task.namespace, task.bucket)
        if held is not None:  # verified in memory: written once, at its name
            _store_small(held, self.part, self.dest, bucket_root, job.fsync, job.hold_files)
            return _done(task, self.info, self.written, self._check, job.mountpath), self.dest
        _install(self.part, self.dest, bucket_root, job.fsync)
        # the .meta stays until the ledger has recorded the outcome: see _in_place
        return _done(task, self.info, self.written, self._check, job.mountpath), self.dest

    def _end_segments(self) -> None:
        """Every segment complete: the checksum, in order, from the file."""
        assert self.segments is not None
        fd, self._fd = self._fd, -1
        try:
            if any(pos < end for _, pos, end in self.segments):
                raise errors.SizeMismatchError(f"{self.task.link}: a ranged segment ended early")
            self.written = self.info.size or 0
            if self._in_order is not None:
                self._hasher = self._in_order.result()
            if self.job.fsync:
                os.fsync(fd)
        finally:
            self._stop_hashing()
            os.close(fd)

    def _stop_hashing(self) -> None:
        """Before the work file's descriptor is closed."""
        in_order, self._in_order = self._in_order, None
        if in_order is not None:
            in_order.stop()

    def close(self) -> None:
        """A failed attempt: close the work file, keep its bytes."""
        if self._fd >= 0:
            try:
                self._save_map()  # where each segment stopped (held pieces are dropped: never counted)
            finally:
                self._stop_hashing()
                os.close(self._fd)
                self._fd = -1
        self._buffer = None
        if self._out is not None:
            out, self._out = self._out, None
            self._stop_hashing()
            out.close()


_HASH_WINDOW = 64 << 20  # bytes of a work file mapped at a time to hash it


_MAPPABLE = frozenset({"md5", "sha256", "sha1", "crc32"})  # hashers that take any buffer (not google-crc32c)


class _InOrder:
    """The checksum of a work file written out of order (ranged segments,
    each at its offset), computed in order on its own thread as the file's
    contiguous prefix grows (the first unfinished segment's next byte):
    the whole file is not read again at the end, and the hashing overlaps
    the transfer (hashlib and zlib release the GIL for large buffers, and
    take the bytes from their mapped pages in the page cache). Whatever the
    order the segments complete in, and after a resume (the kept bytes
    first), the bytes are hashed once, in order. A large stream is one
    segment whose next byte is what has been written to the file: hashed
    beside the write callback, not in it."""

    def __init__(self, fd: int, hasher: Hasher, mapped: bool, segments: list[list[int]]) -> None:
        self.hasher = hasher
        self._fd, self._mapped, self._segments = fd, mapped, segments
        self._hashed = 0  # bytes hashed so far (the prefix)
        self._wake = threading.Event()
        self._last = False  # every byte is written: hash to the end
        self._stopped = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="dlengine-hash", daemon=True)
        self._thread.start()

    @property
    def hashed(self) -> int:
        """Bytes hashed so far, from the start of the file."""
        return self._hashed

    def poke(self) -> None:
        """Bytes were written (from the receiving thread)."""
        if self._prefix() - self._hashed >= _HASH_STEP:
            self._wake.set()

    def result(self) -> Hasher:
        """Every byte is written: the hasher once it has taken them all."""
        self._last = True
        self._wake.set()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.hasher

    def stop(self) -> None:
        """No more hashing (the descriptor is about to be closed)."""
        self._stopped = True
        self._wake.set()
        self._thread.join()

    def _prefix(self) -> int:
        # by their starts (a split appends the second half): contiguous,
        # each ends where the next starts
        ordered = sorted(self._segments)
        for _, pos, end in ordered:
            if pos < end:
                return pos
        return ordered[-1][2] if ordered else 0

    def _run(self) -> None:
        try:
            while not self._stopped:
                self._wake.wait()
                self._wake.clear()
                last = self._last  # (read before the prefix: once set, every segment is complete)
                prefix = self._prefix()
                while self._hashed < prefix and not self._stopped:
                    size = min(prefix - self._hashed, _HASH_WINDOW)
                    _hash_span(self._fd, self._hashed, size, self.hasher, self._mapped)
                    self._hashed += size
                if last:
                    return
        except BaseException as exc:  # noqa: BLE001 - raised by result()
            self._error = exc


_HASH_STEP = 4 << 20  # the in-order hasher wakes once this many bytes of the prefix are new
HASH_ON_THREAD = 8 << 20  # streams of this size or more are hashed on a thread (smaller: in the callback)


def _hash_fd(fd: int, length: int, hasher: Hasher, mapped: bool = False) -> None:
    """Hash the first ``length`` bytes of a file; ``mapped``: from its
    mapped pages, without copying them (a 64 MiB object's MD5 read with
    pread was 158 ms of CPU, mapped 145)."""
    offset = 0
    while offset < length:
        size = min(length - offset, _HASH_WINDOW)
        _hash_span(fd, offset, size, hasher, mapped)
        offset += size


def _hash_span(fd: int, offset: int, size: int, hasher: Hasher, mapped: bool) -> None:
    if not (mapped and _hash_mapped(fd, offset, size, hasher)):
        _hash_read(fd, offset, offset + size, hasher)


def _hash_mapped(fd: int, offset: int, size: int, hasher: Hasher) -> bool:
    """Hash ``size`` bytes at ``offset`` from their mapped pages; False
    (nothing hashed) when they cannot be mapped."""
    skip = offset % mmap.ALLOCATIONGRANULARITY  # (a mapping starts on a page)
    try:
        view = mmap.mmap(fd, size + skip, prot=mmap.PROT_READ, offset=offset - skip)
    except (OSError, ValueError):
        return False
    with view, memoryview(view) as whole, whole[skip:] as span:
        hasher.update(span)  # type: ignore[arg-type]  # (a buffer: hashlib and zlib take it)
    return True


def _hash_read(fd: int, offset: int, end: int, hasher: Hasher) -> None:
    while offset < end:
        data = os.pread(fd, min(end - offset, 4 << 20), offset)
        if not data:
            break
        hasher.update(data)
        offset += len(data)


def _store_small(pieces: list[bytes], part: str, dest: str, bucket_root: str, fsync: bool, hold: bool) -> None:
    """A small object received in memory and verified, stored with one
    write: an unnamed file in its directory linked under its name
    (``layout.install_unnamed``); over an existing object, or where the file
    system has no unnamed files, the work file written and installed.
    ``hold``: its descriptor is kept for its batch's sync, which then drops
    its pages through it (``durable.hold``, ``worker.make_durable``)."""
    keep = functools.partial(durable.hold, dest) if hold else None
    with _InstallErrors(dest):
        stored, created = layout.install_unnamed(dest, bucket_root, lambda fd: _write_pieces(fd, pieces, fsync), keep)
    if fsync:  # a new directory's entry must be durable too, not only the name
        durable.fsync_dirs(d.parent for d in created)
    if not stored:
        _write_whole(part, pieces, fsync)
        _install(part, dest, bucket_root, fsync)


def _write_whole(part: str, pieces: list[bytes], fsync: bool) -> None:
    """A small object in one write (its directory is created on first use)."""
    fd = _open_fd(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        _write_pieces(fd, pieces, fsync)
    finally:
        os.close(fd)


def _write_pieces(fd: int, pieces: list[bytes], fsync: bool) -> None:
    done = os.writev(fd, pieces) if 0 < len(pieces) <= _IOV_MAX else 0
    if done < sum(map(len, pieces)):  # (a short write: the rest, as one piece)
        view = memoryview(b"".join(pieces))[done:]
        while view:
            view = view[os.write(fd, view) :]
    if fsync:
        os.fsync(fd)


def _request(task: Task, job: Job, dest: str, offset: int, kept: _Meta | None, placed: _Meta | None) -> Request:
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


def _conditions(task: Task, dest: str, offset: int, placed: _Meta | None) -> tuple[str | None, str | None]:
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


@frozen
class _Meta:
    """The .meta sidecar of a work file: the version its bytes belong to,
    the checksum they are verified with, and the work file's inode (a
    rename keeps it, so it also identifies the object once in place)."""

    validator: str
    info: ObjectInfo
    check: tuple[str, str] | None
    inode: int
    segments: list[list[int]] | None = None  # [start, next byte, end] of each ranged segment


def _read_meta(meta: str, key: str) -> _Meta | None:
    """Without a validator, kept bytes cannot be trusted: start over."""
    if not os.access(meta, os.F_OK):  # most objects have none (cheaper than the open's exception)
        return None
    try:
        data = json.loads(_read_small(meta))
        check = data.get("checksum")
        info = ObjectInfo(key, data.get("size"), data.get("etag"), data.get("version"), data.get("last_modified"))
        pair = (str(check[0]), str(check[1])) if check else None
        segments = data.get("segments")
        if segments is not None:
            segments = [[int(a), int(b), int(c)] for a, b, c in segments]
            if not all(0 <= a <= b <= c for a, b, c in segments):
                return None
        kept = _Meta(str(data["validator"]), info, pair, int(data.get("inode", -1)), segments)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return kept if data["validator"] else None


def _read_small(path: str) -> bytes:
    """A small file's bytes (a .meta: no text wrapper, no buffering; most
    objects have none, and FileNotFoundError is their common case)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _kept_bytes(part: str) -> int:
    try:
        return os.stat(part).st_size
    except OSError:
        return 0


def _in_place(dest: str, kept: _Meta) -> bool:
    """An earlier attempt renamed its work file into place, then died before
    the ledger recorded it. A conditional request confirms it instead of a
    second download."""
    try:
        st = os.stat(dest)
    except OSError:
        return False
    return st.st_ino == kept.inode and st.st_size == kept.info.size and bool(kept.info.size)


def _open_fd(part: str, flags: int) -> int:
    """A work file's descriptor (``os.open`` flags); its directory is
    created on first use only, as ``_open_part`` does."""
    try:
        return os.open(part, flags | os.O_CLOEXEC, 0o644)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(part), exist_ok=True)
        return os.open(part, flags | os.O_CLOEXEC, 0o644)


def _open_part(part: str, mode: str, buffering: int = -1) -> Any:
    """The work file (``buffering``: written a batch at a time, as
    libcurl's 16 KiB pieces one write each cost twice the CPU); its
    directory is created on first use only."""
    try:
        return open(part, mode, buffering=buffering)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(part), exist_ok=True)
        return open(part, mode, buffering=buffering)


def _listed_checksum(task: Task, info: ObjectInfo) -> tuple[str, str] | None:
    """The listing's checksum, when the answer carries none (a ranged read)
    and is the very object that was listed."""
    if not task.checksum or not task.etag or task.etag != info.etag:
        return None
    algo, _, digest = task.checksum.partition(":")
    return (algo, digest) if algo in _HASHERS and digest else None


def _write_meta(
    meta: str, info: ObjectInfo, check: tuple[str, str] | None, inode: int, segments: list[list[int]] | None = None
) -> None:
    # Not fsynced: if it is lost, the next attempt simply starts from zero.
    # A segment map is written after the bytes it counts (a kill keeps both;
    # only a power cut can lose bytes the map claims, as it can the .part's
    # size that a whole-object resume trusts).
    fields: dict[str, object] = {"validator": info.validator, "size": info.size, "etag": info.etag}
    fields["version"] = info.version
    fields |= {"last_modified": info.last_modified, "checksum": check, "inode": inode}
    if segments is not None:
        fields["segments"] = segments
    # In place, with one pwrite padded to the old length (JSON allows
    # trailing spaces), never truncated or renamed over: a kill cannot tear
    # one write of a page. Truncated first (open "w"), a kill before the
    # write left an empty .meta, and the next attempt of a resumed object
    # started over from zero (bench/chaos.py: 3.9 MB of 4 MiB fetched again).
    # A segment map is rewritten about twice a second, and ext4 forces
    # write-back of a file truncated or renamed over (auto_da_alloc), which
    # stalled the loop ~3 ms a save while large files were written.
    data = json.dumps(fields).encode()
    fd = os.open(meta, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        old = os.fstat(fd).st_size
        os.pwrite(fd, data.ljust(old), 0)
    finally:
        os.close(fd)


def _verify(
    info: ObjectInfo, written: int, hasher: Hasher | None, check: tuple[str, str] | None, part: str, meta: str
) -> None:
    if info.size is not None and written != info.size:
        _remove(meta, part)
        raise errors.SizeMismatchError(f"size mismatch: expected {info.size} bytes, got {written}")
    if check and hasher and hasher.hexdigest() != check[1].lower():
        _remove(meta, part)
        raise errors.ChecksumMismatchError(
            f"checksum mismatch ({check[0]}): expected {check[1]}, got {hasher.hexdigest()}"
        )


def _install(part: str, dest: str, bucket_root: str, fsync: bool = False) -> None:
    with _InstallErrors(dest):
        created = layout.install(part, dest, bucket_root)
    if fsync:  # a new directory's entry must be durable too, not only the rename
        durable.fsync_dirs(d.parent for d in created)


class _InstallErrors:
    """What cannot be stored at ``dest`` whatever is tried again: permanent.
    (A class: a generator's context manager cost ~1.2 us of every object, this ~0.3.)"""

    __slots__ = ("dest",)

    def __init__(self, dest: str) -> None:
        self.dest = dest

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if kind is None:
            return
        if issubclass(kind, IsADirectoryError):
            raise errors.PermanentError(f"cannot store {self.dest}: a directory of that name exists") from None
        if issubclass(kind, NotADirectoryError):
            raise errors.PermanentError(f"cannot store {self.dest}: a parent is an object, not a directory") from None


def has_kept_bytes(mountpath: Path, row_id: int) -> bool:
    """Whether an earlier attempt left bytes of this object to resume from
    (a work file with its .meta: the version they belong to)."""
    part, meta = layout.work_files(mountpath, row_id)
    return _kept_bytes(part) > 0 and os.path.exists(meta)


def drop_work(mountpath: Path, row_id: int) -> None:
    """Remove an object's work files, the .meta first: a .meta left without
    its .part always means the .part was renamed into place (_in_place)."""
    part, meta = layout.work_paths(mountpath, row_id)
    _remove(meta, part, meta.with_suffix(".meta-new"))


def _remove(*paths: str | Path) -> None:
    for path in paths:
        try:
            os.unlink(path)
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

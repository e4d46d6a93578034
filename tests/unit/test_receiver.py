"""The one-object protocol (``transfer.Receiver``) against an in-memory
source: what is on disk at each step, resume, verify, abort. No server:
the bytes and failures come from a source object the test controls."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dlengine import errors, transfer
from dlengine.ledger.models import Task
from dlengine.ledger.states import ObjectState
from dlengine.sources.base import ObjectInfo, Request
from dlengine.storage import layout

CHUNK = 64 << 10


class _Stream:
    def __init__(self, source: _MemorySource, request: Request) -> None:
        self.source = source
        data = source.data
        self.offset = request.offset if request.offset and request.if_range == source.etag else 0
        self.not_modified = request.if_none_match == source.etag
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest() if source.md5 else None
        checksums = {"md5": source.md5 if isinstance(source.md5, str) else md5} if md5 else {}
        self.info = ObjectInfo(
            "k", source.size if source.size is not None else len(data), source.etag, None, None, checksums
        )

    def chunks(self, size: int) -> Iterator[bytes]:
        data = self.source.data
        pos = self.offset
        while pos < len(data):
            if self.source.fail_at is not None and pos >= self.source.fail_at:
                self.source.fail_at = None
                raise errors.SourceConnectionError("reset")
            piece = data[pos : pos + min(size, 10_000)]
            pos += len(piece)
            yield piece
            self.source.seen.append(self.source.on_chunk())

    def close(self) -> None:
        pass


class _MemorySource:
    """One object in memory; ``on_chunk`` runs after each chunk is taken."""

    def __init__(self, data: bytes, etag: str = '"v1"', md5: bool | str = True, size: int | None = None) -> None:
        self.data = data
        self.etag = etag
        self.md5 = md5
        self.size = size
        self.fail_at: int | None = None
        self.requests: list[Request] = []
        self.seen: list[object] = []
        self.on_chunk: object = lambda: None

    def open(self, request: Request) -> _Stream:
        self.requests.append(request)
        return _Stream(self, request)

    def stat(self, key: str, headers: object = None, timeout: float = 60.0) -> ObjectInfo:
        raise NotImplementedError

    def list(self, prefix: str = "", suffix: str = "") -> Iterator[ObjectInfo]:
        raise NotImplementedError


def _task(row: int = 7) -> Task:
    return Task(row, "job", 1, "dir/obj.bin", "mem://obj", 1, 1, "ais", "", "bkt", 0.0, 0)


def _job(tmp_path: Path, source: _MemorySource, cancel: threading.Event | None = None) -> transfer.Job:
    return transfer.Job(tmp_path, source, "k", {}, 5.0, chunk_size=CHUNK, fsync=False, cancel=cancel)  # type: ignore[arg-type]


def _paths(tmp_path: Path, row: int = 7) -> tuple[Path, Path, Path]:
    part, meta = layout.work_paths(tmp_path, row)
    return part, meta, layout.object_path(tmp_path, "ais", "", "bkt", "dir/obj.bin")


@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed-file", "work-file"])
@pytest.mark.parametrize("existing", [False, True], ids=["new", "replaced"])
def test_a_small_object_is_one_file_without_a_sidecar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unnamed: bool, existing: bool
) -> None:
    """Stored at its name in one write, through an unnamed file or (over
    an existing object, or without O_TMPFILE) the work file and a rename."""
    if not unnamed:
        monkeypatch.setattr(layout, "_O_TMPFILE", 0)
    data = b"s" * (CHUNK - 1)
    source = _MemorySource(data)
    part, meta, dest = _paths(tmp_path)
    if existing:
        dest.parent.mkdir(parents=True)
        dest.write_bytes(b"an older version")
    source.on_chunk = lambda: (part.exists(), meta.exists())
    outcome, changed = transfer.fetch(_task(), _job(tmp_path, source))
    assert outcome.state is ObjectState.DONE and outcome.size == len(data)
    assert dest.read_bytes() == data and changed == str(dest)
    assert set(source.seen) == {(False, False)}  # received in memory: nothing on disk meanwhile
    assert not meta.exists() and not part.exists()
    assert (part.parent.exists() and os.listdir(part.parent)) in (False, [])


@pytest.fixture(params=["in-the-callback", "on-a-thread"])
def hashing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A stream hashed as its pieces come, or (large ones: here every one
    of more than a chunk) on a thread from the file as it is written."""
    if request.param == "on-a-thread":
        monkeypatch.setattr(transfer, "HASH_ON_THREAD", CHUNK + 1)
        monkeypatch.setattr(transfer, "_HASH_STEP", 4096)
    return str(request.param)


@pytest.mark.usefixtures("hashing")
def test_a_large_object_keeps_its_validator_beside_its_bytes(tmp_path: Path) -> None:
    data = bytes(range(256)) * (3 * CHUNK // 256)
    source = _MemorySource(data)
    part, meta, dest = _paths(tmp_path)
    source.on_chunk = lambda: (part.exists(), meta.exists())
    outcome, _ = transfer.fetch(_task(), _job(tmp_path, source))
    assert outcome.state is ObjectState.DONE and outcome.checksum == "md5:" + hashlib.md5(data).hexdigest()
    assert set(source.seen) == {(True, True)}
    assert dest.read_bytes() == data
    assert meta.exists() and not part.exists()  # the .meta stays until the ledger records the outcome
    transfer.drop_work(tmp_path, 7)
    assert not meta.exists()


def _reset_at_100k(tmp_path: Path) -> tuple[bytes, _MemorySource]:
    """An attempt whose answer is reset after 100,000 bytes (kept)."""
    data = bytes(range(256)) * (4 * CHUNK // 256)
    source = _MemorySource(data)
    source.fail_at = 100_000
    with pytest.raises(errors.SourceConnectionError):
        transfer.fetch(_task(), _job(tmp_path, source))
    return data, source


@pytest.mark.usefixtures("hashing")
def test_a_reset_keeps_the_bytes_and_the_next_attempt_resumes(tmp_path: Path) -> None:
    part, meta, dest = _paths(tmp_path)
    data, source = _reset_at_100k(tmp_path)
    assert part.stat().st_size == 100_000 and meta.exists() and not dest.exists()
    outcome, _ = transfer.fetch(_task(), _job(tmp_path, source))
    again = source.requests[-1]
    assert again.offset == 100_000 and again.if_range == '"v1"'
    assert outcome.state is ObjectState.DONE and dest.read_bytes() == data  # the checksum covers the kept prefix


@pytest.mark.usefixtures("hashing")
def test_the_work_directory_listed_after_a_claim_names_the_rows_to_resume(tmp_path: Path) -> None:
    """A worker lists .work once after each claim instead of asking every
    row whether its .meta exists: the row of an earlier attempt is named
    there and resumes; a row not named looks for nothing (``Job.no_meta``:
    it starts from zero, whatever appears meanwhile); a work directory of
    more entries than the listing takes leaves every row to look."""
    data, source = _reset_at_100k(tmp_path)
    names = layout.work_names(tmp_path)
    assert names is not None and "7.meta" in names and "8.meta" not in names
    job = _job(tmp_path, source)
    job.no_meta = "7.meta" not in names
    outcome, _ = transfer.fetch(_task(), job)
    assert source.requests[-1].offset == 100_000 and outcome.state is ObjectState.DONE
    assert _paths(tmp_path)[2].read_bytes() == data
    again = tmp_path / "again"
    _, source = _reset_at_100k(again)
    job = _job(again, source)
    job.no_meta = True  # (as if listed before the earlier attempt: not what a worker does)
    outcome, _ = transfer.fetch(_task(), job)
    assert source.requests[-1].offset == 0 and outcome.state is ObjectState.DONE
    assert layout.work_names(tmp_path, most=2) is not None
    for row in range(3):
        (tmp_path / ".work" / f"{100 + row}.meta").write_text("{}")
    assert layout.work_names(tmp_path, most=2) is None
    assert layout.work_names(tmp_path / "nowhere") is None


class _Killed(BaseException):
    """The process stopped here (a kill -9): nothing after it runs."""


def test_a_kill_while_the_sidecar_is_rewritten_keeps_the_resume_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resumed attempt rewrites the .meta before it receives: killed before
    that one write, the old .meta must still be there, whole. (Truncated
    first, it was left empty and the next attempt started over from zero.)"""
    part, meta, dest = _paths(tmp_path)
    data, source = _reset_at_100k(tmp_path)
    kept = meta.read_bytes()

    def killed(*_: object) -> int:
        raise _Killed()

    with monkeypatch.context() as patch:
        patch.setattr(transfer.os, "pwrite", killed)
        with pytest.raises(_Killed):
            transfer.fetch(_task(), _job(tmp_path, source))
    assert meta.read_bytes() == kept and part.stat().st_size == 100_000
    outcome, _ = transfer.fetch(_task(), _job(tmp_path, source))
    assert source.requests[-1].offset == 100_000  # not from zero
    assert outcome.state is ObjectState.DONE and dest.read_bytes() == data


@pytest.mark.usefixtures("hashing")
def test_bytes_that_do_not_match_the_checksum_are_dropped(tmp_path: Path) -> None:
    source = _MemorySource(b"x" * (2 * CHUNK), md5="0" * 32)
    part, meta, dest = _paths(tmp_path)
    with pytest.raises(errors.ChecksumMismatchError):
        transfer.fetch(_task(), _job(tmp_path, source))
    assert not part.exists() and not meta.exists() and not dest.exists()


def test_a_stream_hashed_on_a_thread_stops_it_when_it_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transfer, "HASH_ON_THREAD", CHUNK + 1)
    source = _MemorySource(os.urandom(4 * CHUNK))
    source.fail_at = 150_000
    before = threading.active_count()
    source.on_chunk = lambda: threading.active_count()
    with pytest.raises(errors.SourceConnectionError):
        transfer.fetch(_task(), _job(tmp_path, source))
    assert set(source.seen) == {before + 1} and threading.active_count() == before


def test_a_small_object_longer_than_announced_is_refused(tmp_path: Path) -> None:
    source = _MemorySource(b"y" * (CHUNK + 5), md5=False, size=100)
    part, _, dest = _paths(tmp_path)
    with pytest.raises(errors.SizeMismatchError):
        transfer.fetch(_task(), _job(tmp_path, source))
    assert not dest.exists() and not part.exists()


def test_an_abort_stops_the_transfer_and_keeps_nothing_visible(tmp_path: Path) -> None:
    cancel = threading.Event()
    source = _MemorySource(b"z" * (4 * CHUNK))
    source.on_chunk = cancel.set
    part, _, dest = _paths(tmp_path)
    with pytest.raises(transfer.Aborted):
        transfer.fetch(_task(), _job(tmp_path, source, cancel))
    assert not dest.exists() and part.stat().st_size == 10_000


def test_an_unchanged_copy_in_place_is_confirmed_not_fetched(tmp_path: Path) -> None:
    data = b"w" * (3 * CHUNK)
    source = _MemorySource(data)
    _, meta, dest = _paths(tmp_path)
    transfer.fetch(_task(), _job(tmp_path, source))  # renamed into place; killed before the record
    assert meta.exists()
    outcome, _ = transfer.fetch(_task(), _job(tmp_path, source))
    assert source.requests[-1].if_none_match == '"v1"'  # conditional: the source said 304
    assert outcome.state is ObjectState.DONE and dest.read_bytes() == data


@pytest.mark.parametrize("mapped", [True, False])
def test_a_work_file_is_hashed_the_same_mapped_or_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mapped: bool
) -> None:
    """Segments are hashed from the file at the end: mapped window by window
    (hashlib, zlib) or read (google-crc32c takes no mapping), the same digest;
    an empty file too."""
    monkeypatch.setattr(transfer, "_HASH_WINDOW", 8192)  # (a multiple of the page size, as offsets must be)
    data = os.urandom(3 * 8192 + 123)
    path = tmp_path / "part"
    path.write_bytes(data + b"tail not hashed")
    fd = os.open(path, os.O_RDONLY)
    try:
        for length in (len(data), 0):
            hasher = hashlib.md5()
            transfer._hash_fd(fd, length, hasher, mapped)
            assert hasher.hexdigest() == hashlib.md5(data[:length]).hexdigest()
    finally:
        os.close(fd)


def _holding(tmp_path: Path, source: _MemorySource) -> tuple[transfer.Job, dict[int, bytes]]:
    held: dict[int, bytes] = {}
    job = _job(tmp_path, source)
    job.hold = held.__setitem__
    return job, held


def test_a_held_small_object_never_touches_the_disk(tmp_path: Path) -> None:
    """``Job.hold`` (a Dask batch uploading from memory): the verified bytes
    go to the hook, no work file, no installed copy, no directory made."""
    data = b"h" * (CHUNK - 1)
    source = _MemorySource(data)
    job, held = _holding(tmp_path / "scratch", source)
    outcome, changed = transfer.fetch(_task(), job)
    assert outcome.state is ObjectState.DONE and outcome.size == len(data) and changed is None
    assert outcome.checksum == "md5:" + hashlib.md5(data).hexdigest()
    assert held == {7: data}
    assert not (tmp_path / "scratch").exists()


def test_a_held_object_that_fails_its_checksum_is_not_handed_on(tmp_path: Path) -> None:
    source = _MemorySource(b"h" * 100, md5="0" * 32)
    job, held = _holding(tmp_path, source)
    with pytest.raises(errors.ChecksumMismatchError):
        transfer.fetch(_task(), job)
    assert held == {}


def test_an_object_larger_than_a_chunk_is_installed_even_with_hold(tmp_path: Path) -> None:
    data = bytes(range(256)) * (2 * CHUNK // 256)
    source = _MemorySource(data)
    job, held = _holding(tmp_path, source)
    outcome, changed = transfer.fetch(_task(), job)
    _, _, dest = _paths(tmp_path)
    assert outcome.state is ObjectState.DONE and changed == str(dest) and dest.read_bytes() == data
    assert held == {}


def _segment_info(data: bytes, md5: str | None = None) -> ObjectInfo:
    return ObjectInfo("k", len(data), '"v1"', None, None, {"md5": md5 or hashlib.md5(data).hexdigest()})


def _write_segments(receiver: transfer.Receiver, data: bytes, order: list[int], piece: int) -> None:
    """The segments' remaining bytes, ``order`` naming which segment gets
    its next piece at each step (interleaved, as parallel answers come)."""
    segments = receiver.segments
    assert segments is not None
    sent = {index: pos for index, (_, pos, _) in enumerate(segments)}  # (held pieces are not in the map yet)
    steps = list(order)
    while steps:
        index = steps.pop(0)
        pos, end = sent[index], segments[index][2]
        if pos >= end:
            continue
        complete = receiver.write_at(index, data[pos : min(end, pos + piece)])
        sent[index] = min(end, pos + piece)
        assert complete == (sent[index] == end)
        steps.append(index)


_THIRDS = [(0, 40_000), (40_000, 80_001), (80_001, 120_003)]


@pytest.mark.parametrize("order", [[0, 1, 2], [2, 1, 0], [1, 2, 0], [1, 0, 2], [2, 0, 1], [0, 2, 1]])
@pytest.mark.parametrize("batched", [False, True], ids=["each-piece-written", "pieces-held"])
def test_segments_are_hashed_in_order_whatever_order_they_complete_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, order: list[int], batched: bool
) -> None:
    """The checksum of a segmented object is computed on a thread as the
    file's contiguous prefix grows: the same digest whichever segment ends
    first (here each segment's bytes at once, in the order given, and then
    interleaved); the prefix is hashed in steps smaller than a segment.
    ``batched``: as on the libcurl loop, pieces are held and written
    several at a time."""
    monkeypatch.setattr(transfer, "_HASH_STEP", 4096)
    monkeypatch.setattr(transfer, "WRITE_BATCH", 20_000)
    data = os.urandom(_THIRDS[-1][1])
    for piece in (50_000, 7_000):
        shutil.rmtree(tmp_path / "ais", ignore_errors=True)
        receiver = transfer.Receiver(_task(), _job(tmp_path, _MemorySource(data)))
        receiver.looked_after = batched
        receiver.begin_segments(_segment_info(data), _THIRDS)
        if piece == 50_000:
            for index in order:
                _write_segments(receiver, data, [index], piece)
        else:
            _write_segments(receiver, data, order, piece)
        outcome, dest = receiver.end()
        assert outcome.state is ObjectState.DONE and outcome.checksum == "md5:" + hashlib.md5(data).hexdigest()
        assert dest is not None and Path(dest).read_bytes() == data
        transfer.drop_work(tmp_path, 7)


def _interrupted_segments(tmp_path: Path) -> bytes:
    """A segmented attempt that failed with one segment complete and two
    midway (the map saved where each stopped); the object's bytes."""
    data = os.urandom(_THIRDS[-1][1])
    first = transfer.Receiver(_task(), _job(tmp_path, _MemorySource(data)))
    first.begin_segments(_segment_info(data), _THIRDS)
    segments = first.segments
    assert segments is not None
    for index, upto in ((1, 70_000), (2, 120_003), (0, 10_000)):
        first.write_at(index, data[segments[index][1] : upto])
    first.close()
    return data


def test_segments_resumed_after_a_failure_are_hashed_from_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resumed attempt (the segment map in the .meta) hashes the kept
    bytes and the new ones, in order: the whole object's digest."""
    monkeypatch.setattr(transfer, "_HASH_STEP", 4096)
    data = _interrupted_segments(tmp_path)
    again = transfer.Receiver(_task(), _job(tmp_path, _MemorySource(data)))
    assert again.kept_segments == [[0, 10_000, 40_000], [40_000, 70_000, 80_001], [80_001, 120_003, 120_003]]
    again.resume_segments()
    _write_segments(again, data, [1, 0], 3_000)
    outcome, dest = again.end()
    assert outcome.checksum == "md5:" + hashlib.md5(data).hexdigest()
    assert dest is not None and Path(dest).read_bytes() == data


def test_segments_that_do_not_match_the_checksum_fail_the_object(tmp_path: Path) -> None:
    data = os.urandom(_THIRDS[-1][1])
    part, meta, dest = _paths(tmp_path)
    receiver = transfer.Receiver(_task(), _job(tmp_path, _MemorySource(data)))
    receiver.begin_segments(_segment_info(data, md5="0" * 32), _THIRDS)
    _write_segments(receiver, data, [2, 0, 1], 9_000)
    with pytest.raises(errors.ChecksumMismatchError):
        receiver.end()
    assert not part.exists() and not meta.exists() and not dest.exists()


def test_a_failed_segmented_attempt_stops_its_hashing_thread(tmp_path: Path) -> None:
    data = os.urandom(_THIRDS[-1][1])
    before = threading.active_count()
    receiver = transfer.Receiver(_task(), _job(tmp_path, _MemorySource(data)))
    receiver.begin_segments(_segment_info(data), _THIRDS)
    receiver.write_at(0, data[:5_000])
    assert threading.active_count() == before + 1
    receiver.close()
    assert threading.active_count() == before


def test_a_kill_while_starting_over_leaves_no_segment_map_naming_lost_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An attempt that starts over from zero (a whole stream after segments)
    truncates the work file: killed right after, the old segment map must
    be gone, or the next attempt would resume its segments into the
    emptied file (holes where the map says bytes are)."""
    data = _interrupted_segments(tmp_path)
    again = transfer.Receiver(_task(), _job(tmp_path, _MemorySource(data)))
    assert again.kept_segments is not None

    def killed(*_: object) -> int:
        raise _Killed()

    with monkeypatch.context() as patch:
        patch.setattr(transfer.os, "pwrite", killed)  # the new .meta is never written
        with pytest.raises(_Killed):
            again.begin(_segment_info(data), 0, False)  # the whole object, from zero
    after = transfer.Receiver(_task(), _job(tmp_path, _MemorySource(data)))
    assert after.kept_segments is None and after.request.offset == 0

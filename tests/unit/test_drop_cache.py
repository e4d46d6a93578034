"""Objects leave the page cache once they are durable (recorded done), and
a large object's pages go behind its early write-backs (never ahead of a
checksum computed from the file): real files, their residency read with
mincore(2)."""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import time
from pathlib import Path

import pytest

from dlengine import transfer
from dlengine.ledger.models import Outcome, Task
from dlengine.ledger.states import ObjectState
from dlengine.sources.base import ObjectInfo
from dlengine.storage import durable
from dlengine.supervisor import worker

_libc = ctypes.CDLL(None, use_errno=True)
_mmap = _libc.mmap
_mmap.restype = ctypes.c_void_p
_mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]


def _resident(path: Path) -> int:
    """How many of the file's pages are in the page cache (mincore of a
    shared read-only mapping: mapping it reads nothing)."""
    size = path.stat().st_size
    pages = -(-size // mmap.PAGESIZE)
    vec = (ctypes.c_ubyte * pages)()
    fd = os.open(path, os.O_RDONLY)
    try:
        address = _mmap(None, ctypes.c_size_t(size), mmap.PROT_READ, mmap.MAP_SHARED, fd, ctypes.c_long(0))
        if address in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "mmap")
        try:
            if _libc.mincore(ctypes.c_void_p(address), ctypes.c_size_t(size), vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore")
        finally:
            _libc.munmap(ctypes.c_void_p(address), ctypes.c_size_t(size))
    finally:
        os.close(fd)
    return sum(b & 1 for b in vec)


def _written(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


@pytest.fixture
def drops(tmp_path: Path) -> None:
    """Skip where the file system keeps its pages whatever is asked (tmpfs)."""
    probe = _written(tmp_path / "probe", 1 << 20)
    durable.fsync_files([probe])
    durable.drop_files([probe])
    if _resident(probe) > 16:
        pytest.skip("this file system keeps its pages (tmpfs?)")
    probe.unlink()


MIB = 1 << 20


@pytest.mark.usefixtures("drops")
@pytest.mark.parametrize("batch_sync", [True, False], ids=["syncfs", "fsyncs"])
def test_durable_objects_leave_the_page_cache(tmp_path: Path, batch_sync: bool) -> None:
    bucket = tmp_path / "ais" / "b"
    count = worker.FEW_FILES + 1 if batch_sync else 2  # (a syncfs, or fsyncs of a few files)
    big = [_written(bucket / f"big{i}", MIB) for i in range(count)]
    small = _written(bucket / "sub" / "small", 10 << 10)
    failed = _written(bucket / "failed", 2 * MIB)
    skipped = _written(bucket / "skipped", 3 * 4096)
    if not batch_sync:
        durable.fsync_files([*big, small, failed, skipped])  # (per-file mode: fsynced when written)
    batch: list[tuple[Outcome, Path | None]] = [
        *((Outcome(i, ObjectState.DONE, size=MIB), f) for i, f in enumerate(big)),
        (Outcome(90, ObjectState.DONE, size=10 << 10), small),
        (Outcome(91, ObjectState.PENDING, size=2 * MIB), failed),
        (Outcome(92, ObjectState.SKIPPED, size=3 * 4096), skipped),
    ]
    assert all(_resident(f) for f in [*big, small])
    worker.make_durable(batch, tmp_path, batch_sync=batch_sync, drop=True)
    assert [_resident(f) for f in big] == [0] * count
    assert _resident(small) == 0  # small objects too (their pages in fresh memory cost more)
    assert _resident(failed) == 2 * MIB // mmap.PAGESIZE  # not recorded done: untouched
    assert _resident(skipped) == 3  # nothing written for it: untouched


@pytest.mark.usefixtures("drops")
def test_kept_when_asked(tmp_path: Path) -> None:
    files = [_written(tmp_path / "ais" / "b" / f"o{i}", MIB) for i in range(worker.FEW_FILES + 1)]
    batch: list[tuple[Outcome, Path | None]] = [
        (Outcome(i, ObjectState.DONE, size=MIB), f) for i, f in enumerate(files)
    ]
    worker.make_durable(batch, tmp_path, batch_sync=True, drop=False)
    assert [_resident(f) for f in files] == [MIB // mmap.PAGESIZE] * len(files)


STEP = 64 << 10  # durable.WRITEBACK_EVERY in these tests


@pytest.fixture
def ranges(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[tuple[int, int]]]:
    """Each early write-back and each range let go, (start, end)."""
    seen: dict[str, list[tuple[int, int]]] = {"written": [], "dropped": []}
    monkeypatch.setattr(durable, "WRITEBACK_EVERY", STEP)
    monkeypatch.setattr(durable, "start_writeback", lambda fd, at, n: seen["written"].append((at, at + n)))
    monkeypatch.setattr(durable, "drop_cached", lambda fd, at=0, n=0: seen["dropped"].append((at, at + n)))
    return seen


def _task() -> Task:
    return Task(7, "job", 1, "dir/obj.bin", "mem://obj", 1, 1, "ais", "", "bkt", 0.0, 0)


def _receiver(tmp_path: Path, drop: bool) -> transfer.Receiver:
    job = transfer.Job(tmp_path, None, "k", {}, 5.0, chunk_size=STEP, fsync=False, drop_cache=drop)
    receiver = transfer.Receiver(_task(), job)
    receiver.looked_after = True
    return receiver


def _covered(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    return all(any(a <= pos < b for a, b in spans) for pos in range(start, end, 4096))


@pytest.mark.parametrize("drop", [True, False], ids=["dropped", "kept"])
def test_a_stream_lets_its_pages_go_a_write_back_behind(
    tmp_path: Path, ranges: dict[str, list[tuple[int, int]]], drop: bool
) -> None:
    data = os.urandom(20 * STEP + 123)
    receiver = _receiver(tmp_path, drop)
    info = ObjectInfo("k", len(data), '"v1"', None, None, {"md5": hashlib.md5(data).hexdigest()})
    assert receiver.begin(info, 0, False) is None
    for pos in range(0, len(data), 16 << 10):
        receiver.write(data[pos : pos + (16 << 10)])
    outcome, dest = receiver.end()
    assert outcome.state is ObjectState.DONE and dest is not None and Path(dest).read_bytes() == data
    if not drop:
        assert ranges["dropped"] == []
        return
    written, dropped = ranges["written"], ranges["dropped"]
    assert len(written) >= 19 and len(dropped) == len(written) - 1
    for i, (start, end) in enumerate(dropped):  # each: what the write-back before the last one took
        assert (start, end) == (dropped[i - 1][1] if i else 0, written[i][1])
        assert _covered(written[: i + 1], start, end)


def test_segments_let_go_only_of_pages_already_hashed(
    tmp_path: Path, ranges: dict[str, list[tuple[int, int]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Segments let go of their pages a write-back behind, and never past
    the checksum's prefix (computed from the file's pages: bytes let go
    before it reads them would be read again from disk). Here the last
    three segments come first: nothing of them goes while the first is
    missing; then the first, each piece once the hashing has caught up."""
    monkeypatch.setattr(transfer, "_HASH_STEP", 4096)
    monkeypatch.setattr(transfer, "WRITE_BATCH", 16 << 10)
    data = os.urandom(40 * STEP)
    quarter = len(data) // 4
    bounds = [(i * quarter, (i + 1) * quarter) for i in range(4)]
    receiver = _receiver(tmp_path, True)
    seen: list[tuple[int, int, int]] = []
    inner = durable.drop_cached

    def spy(fd: int, at: int = 0, n: int = 0) -> None:
        assert receiver._in_order is not None
        seen.append((at, at + n, receiver._in_order.hashed))
        inner(fd, at, n)

    monkeypatch.setattr(durable, "drop_cached", spy)
    md5 = hashlib.md5(data).hexdigest()
    receiver.begin_segments(ObjectInfo("k", len(data), '"v1"', None, None, {"md5": md5}), bounds)
    piece = 16 << 10
    for index in (1, 2, 3):
        for pos in range(bounds[index][0], bounds[index][1], piece):
            receiver.write_at(index, data[pos : pos + piece])
    assert seen == []  # (the prefix is empty)
    in_order = receiver._in_order
    assert in_order is not None
    for pos in range(0, quarter, piece):
        deadline = time.monotonic() + 5
        while in_order.hashed < pos - piece and time.monotonic() < deadline:
            in_order.poke()  # (the loop pokes it at its progress steps)
            time.sleep(0.001)
        receiver.write_at(0, data[pos : pos + piece])
    outcome, dest = receiver.end()
    assert outcome.checksum == "md5:" + md5
    assert dest is not None and Path(dest).read_bytes() == data
    assert seen, "nothing let go"
    assert all(end <= hashed for _, end, hashed in seen)
    assert all(_covered(ranges["written"], start, end) for start, end, _ in seen)


def _stored_small(bucket: Path, name: str, size: int) -> Path:
    """A small object as the libcurl loop stores it with the worker's
    settings: an unnamed file linked under its name, its descriptor held
    for the sync (``transfer._store_small``, ``durable.hold``)."""
    dest = bucket / name
    transfer._store_small([os.urandom(size)], str(bucket / f".{name}.part"), str(dest), str(bucket), False, True)
    return dest


@pytest.mark.usefixtures("drops")
def test_held_descriptors_drop_their_pages_and_close(tmp_path: Path) -> None:
    """The sync thread drops the pages of the small objects through the
    descriptors their installs held (no open by path), and closes them."""
    bucket = tmp_path / "ais" / "b"
    bucket.mkdir(parents=True)
    before = set(os.listdir("/proc/self/fd"))
    files = [_stored_small(bucket, f"o{i}", 10 << 10) for i in range(worker.FEW_FILES + 1)]
    assert len(set(os.listdir("/proc/self/fd")) - before) == len(files)  # held from the write to the sync
    assert all(_resident(f) for f in files)
    batch: list[tuple[Outcome, str | None]] = [(Outcome(i, ObjectState.DONE), str(f)) for i, f in enumerate(files)]
    worker.make_durable(batch, tmp_path, batch_sync=True, drop=True)
    assert [_resident(f) for f in files] == [0] * len(files)
    assert set(os.listdir("/proc/self/fd")) == before and not durable._held


def test_held_descriptors_close_when_the_sync_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed sync (its outcomes go back for another attempt) still lets
    go of every descriptor, and drops nothing (its pages may be dirty)."""
    bucket = tmp_path / "ais" / "b"
    bucket.mkdir(parents=True)
    before = set(os.listdir("/proc/self/fd"))
    files = [_stored_small(bucket, f"o{i}", 10 << 10) for i in range(worker.FEW_FILES + 1)]

    def failing(path: Path) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(durable, "syncfs", failing)
    batch: list[tuple[Outcome, str | None]] = [(Outcome(i, ObjectState.DONE), str(f)) for i, f in enumerate(files)]
    with pytest.raises(OSError, match="Input/output"):
        worker.make_durable(batch, tmp_path, batch_sync=True, drop=True)
    assert set(os.listdir("/proc/self/fd")) == before and not durable._held
    assert all(_resident(f) for f in files)


def test_no_more_than_held_most_are_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ``HELD_MOST`` open descriptors the installs close theirs (the
    drop then opens those by path): a worker never runs out of them."""
    monkeypatch.setattr(durable, "HELD_MOST", 3)
    bucket = tmp_path / "ais" / "b"
    bucket.mkdir(parents=True)
    before = set(os.listdir("/proc/self/fd"))
    files = [_stored_small(bucket, f"o{i}", 4096) for i in range(5)]
    assert len(set(os.listdir("/proc/self/fd")) - before) == 3
    durable.let_go([str(f) for f in files], drop=True)
    assert set(os.listdir("/proc/self/fd")) == before and not durable._held

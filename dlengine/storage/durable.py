"""Making bytes durable: fsync of files and directories, or one syncfs(2)
of a whole file system for a batch of objects."""

from __future__ import annotations

import errno
import functools
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

StrPath = str | Path  # a file's path, as a string or pathlib's


def fsync_dir(path: StrPath) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_files(paths: Iterable[StrPath]) -> None:
    """fsync each file (data and size); one gone meanwhile is not ours to keep."""
    _each_file(paths, os.fsync, FileNotFoundError)


def _each_file(paths: Iterable[StrPath], act: Callable[[int], object], skipped: type[OSError]) -> None:
    """``act`` on each file, opened for reading (not through a symlink);
    a file whose open raises ``skipped`` is passed over."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except skipped:
            continue
        try:
            act(fd)
        finally:
            os.close(fd)


def fsync_dirs(paths: Iterable[StrPath]) -> None:
    """fsync each distinct directory once (a batch of renames)."""
    for path in set(paths):
        try:
            fsync_dir(path)
        except FileNotFoundError:
            pass


@functools.cache
def _libc(name: str) -> Any:
    """A C library function, or None where the platform has none; ctypes is
    imported at the first call (commands that only fsync do without it)."""
    import ctypes

    try:
        return getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None


def syncfs_reports_errors() -> bool:
    """syncfs(2) reports write-back errors (Linux 5.8 and later): then one
    call makes a whole batch of files and renames durable, and says so
    when it could not. Whether the C library has it is asked by the first
    batch that would use it (``has_syncfs``): ctypes is ~3 ms of a short
    command's start, whose few files are fsynced one by one anyway."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (5, 8)


def has_syncfs() -> bool:
    """The C library has syncfs(2) (looked up once)."""
    return _libc("syncfs") is not None


def syncfs(path: Path) -> None:
    """Flush every file and directory entry written on ``path``'s file
    system; raises OSError if any of it could not be written."""
    call = _libc("syncfs")
    if call is None:
        raise OSError(errno.ENOSYS, "syncfs is not available")
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if call(fd) != 0:
            import ctypes

            err = ctypes.get_errno()
            raise OSError(err, f"syncfs of {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def drop_cached(fd: int, offset: int = 0, length: int = 0) -> None:
    """Let the kernel drop a range of a file's cached pages (0: to the
    end). Only clean pages go: dirty ones start their write-back and stay,
    so call it for bytes already written out. Best effort."""
    try:
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
    except (OSError, AttributeError):  # (no posix_fadvise on this platform)
        pass


def drop_files(paths: Iterable[StrPath]) -> None:
    """``drop_cached`` of whole files (durable ones: nothing dirty is left)."""
    _each_file(paths, drop_cached, OSError)


# descriptors of new files kept open from their write to their batch's
# sync (``hold``, ``let_go``): the sync thread's page drop then opens no
# file by its path again (a lookup of every component: ~3 µs an object)
_held: dict[str, int] = {}
HELD_MOST = 256  # descriptors held at once at most (the rest: by path)


def hold(path: str, fd: int) -> bool:
    """Keep ``fd``, of the new file ``path``, open until ``let_go``; False
    (the caller closes it) when enough are held already."""
    if len(_held) >= HELD_MOST or path in _held:
        return False
    _held[path] = fd
    return True


def let_go(paths: Iterable[StrPath], drop: bool) -> None:
    """After their sync (or its failure: ``drop`` False), the descriptors
    ``hold`` kept for ``paths`` closed; with ``drop``, each file's pages
    let go first (a file not held opened by its path for that)."""
    for path in paths:
        fd = _held.pop(os.fspath(path), -1)
        if fd < 0:
            if drop:
                drop_files((path,))
            continue
        try:
            if drop:
                drop_cached(fd)
        finally:
            os.close(fd)


_SYNC_FILE_RANGE_WRITE = 2
WRITEBACK_EVERY = 8 << 20  # bytes of a large object written between early write-backs


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range of a file to disk now,
    without waiting (sync_file_range WRITE): the final fsync or syncfs of a
    large object then has little left to do. Best effort."""
    call = _libc("sync_file_range")
    if call is not None:
        import ctypes

        call(fd, ctypes.c_int64(offset), ctypes.c_int64(length), _SYNC_FILE_RANGE_WRITE)

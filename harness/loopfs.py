"""A fresh ext4 with its journal, on a loop device, for the benchmarks'
destination trees.

This machine's root file system is ext4 *without* a journal. There the
inode allocator skips every inode freed in the last one to five minutes
(``recently_deleted``, which reads each one's table block), so after any
process deletes a few thousand files the next creates can cost up to ~15x
their usual time: a 10 KiB file made with ``O_TMPFILE`` + ``linkat`` in
38-43 µs on a journaled ext4, in 168-286 µs here right after a deletion; a
named create in 29-31 µs, or 28-445 µs (``bench/fs_creates.py``, 2026-12-04,
in bench/RESULTS.md). Which tool meets it depends on which block group its
directory lands in: the benchmarks' figures went bimodal with it. ``mkfs.ext4``'s default, and most
users' disks, have a journal, and there ``recently_deleted`` is never
asked: the same creates take 29-38 µs whatever was deleted before.

``journaled`` writes an image of zeros under a scratch directory (every
block of it allocated before the runs: writes into a sparse image's holes
made the first run on a fresh one 2-3x slower, allocating the image's
blocks in the root file system as it went), formats it (inode tables and
journal written at once: no ``ext4lazyinit`` thread writing in the
background of the runs), attaches it to a loop device with direct I/O (its
pages cached once, not again in the root file system's page cache), mounts
it without ``discard`` (which would punch the deleted files' blocks out of
the image again), and undoes all of it on the way out. Root only; ``None``
when it cannot (then the caller uses its own directory and says so).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

TOOLS = ("mkfs.ext4", "losetup", "mount", "umount")


def unavailable() -> str | None:
    """Why ``journaled`` cannot work here, or None."""
    if os.geteuid() != 0:
        return "not root (a loop device needs root)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"not installed: {', '.join(missing)}"
    if not os.access("/dev/loop-control", os.R_OK | os.W_OK):
        return "no /dev/loop-control (a container without loop devices?)"
    return None


def _run(*cmd: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise OSError(f"{' '.join(cmd)}: exit {done.returncode}: {done.stderr.strip()[-300:]}")
    return done.stdout.strip()


@contextlib.contextmanager
def journaled(scratch: Path, size: int) -> Iterator[Path | None]:
    """A mounted, empty, journaled ext4 of ``size`` bytes (sparse: only what
    is written takes space) at ``scratch/mnt``; None if ``unavailable``."""
    if unavailable() is not None:
        yield None
        return
    image, mnt = scratch / "fs.img", scratch / "mnt"
    mnt.mkdir(parents=True, exist_ok=True)
    device = ""
    mounted = False
    try:
        _zeros(image, size)
        _run("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0,nodiscard", str(image))
        device = _run("losetup", "--find", "--show", "--direct-io=on", str(image))
        _run("mount", "-o", "noatime", device, str(mnt))
        mounted = True
        mnt.chmod(0o755)
        yield mnt
    finally:
        if mounted and subprocess.run(["umount", str(mnt)], capture_output=True, timeout=120).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=60)  # (busy: detached when free)
        if device:
            subprocess.run(["losetup", "-d", device], capture_output=True, timeout=60)
        image.unlink(missing_ok=True)


def _zeros(image: Path, size: int) -> None:
    """``size`` bytes of zeros at ``image``, written past the page cache
    (``O_DIRECT``: the runs' memory is not filled with them)."""
    step = 16 << 20
    size = -(-size // 4096) * 4096  # (whole pages, as O_DIRECT wants)
    buffer = mmap.mmap(-1, step)  # (page-aligned; zeros)
    fd = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_DIRECT", 0), 0o600)
    try:
        with memoryview(buffer) as zeros:
            for offset in range(0, size, step):
                os.write(fd, zeros[: min(step, size - offset)])
        os.fsync(fd)
    finally:
        os.close(fd)
        buffer.close()


def describe(mnt: Path | None, why_not: str | None) -> str:
    """The results' line about where the runs wrote."""
    if mnt is None:
        return f"the work directory's own file system ({why_not or 'asked for'})"
    return "a fresh ext4 with its journal on a loop device (direct I/O), made for this run (harness/loopfs.py)"

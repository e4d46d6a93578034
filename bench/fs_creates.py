#!/usr/bin/env python3
"""What a small file's creation costs right after a deletion, on this
machine's root file system and on a fresh journaled ext4 (why the data-path
benchmarks write to one: ``datapath.py --fs``, ``harness/loopfs.py``).

Each round, in a new directory: ``--count`` files of 10 KiB made as
dlengine makes a small object (an unnamed file, ``O_TMPFILE``, written and
linked under its name) and as rclone does (``open(O_CREAT|O_EXCL)``, write,
close), then the directory deleted, so the next round's creates come right
after a deletion, as a benchmark's next run does::

    sudo python3 bench/fs_creates.py [--count 10000] [--rounds 3]

Prints µs per file of each round on both file systems (the journaled one
only as root, with losetup and mkfs.ext4).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import loopfs

SIZE = 10 * 1024


def unnamed(directory: str, count: int, data: list[bytes]) -> None:
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(count):
            fd = os.open(".", os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC, 0o644, dir_fd=dfd)
            try:
                os.writev(fd, data)
                os.link(f"/proc/self/fd/{fd}", f"obj-{i:06d}", dst_dir_fd=dfd, follow_symlinks=True)
            finally:
                os.close(fd)
    finally:
        os.close(dfd)


def by_name(directory: str, count: int, data: list[bytes]) -> None:
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(count):
            fd = os.open(f"obj-{i:06d}", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644, dir_fd=dfd)
            try:
                os.writev(fd, data)
            finally:
                os.close(fd)
    finally:
        os.close(dfd)


def rounds(base: Path, count: int, reps: int) -> dict[str, list[float]]:
    data = [os.urandom(SIZE)]
    got: dict[str, list[float]] = {"O_TMPFILE + linkat": [], "open(O_CREAT) by name": []}
    for rep in range(reps):
        for label, make in (("O_TMPFILE + linkat", unnamed), ("open(O_CREAT) by name", by_name)):
            directory = base / f"{rep}-{make.__name__}"
            directory.mkdir()
            started = time.perf_counter()
            make(str(directory), count, data)
            got[label].append((time.perf_counter() - started) / count * 1e6)
            shutil.rmtree(directory)  # (the next round's creates come right after this deletion)
    return got


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10000, help="files per round (default 10000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dlb-fs-") as scratch:
        work = Path(scratch)
        (work / "root").mkdir()
        results = {"this machine's root file system": rounds(work / "root", args.count, args.rounds)}
        with loopfs.journaled(work / "loop", max(1 << 30, 4 * args.count * SIZE)) as mnt:
            if mnt is None:
                print(f"fs_creates: no journaled file system: {loopfs.unavailable()}", file=sys.stderr)
            else:
                results["a fresh journaled ext4 (harness/loopfs.py)"] = rounds(mnt, args.count, args.rounds)
    print(f"{args.count:,} files of 10 KiB a round, each round right after the last one's deletion: µs per file\n")
    print("| file system | create | rounds |")
    print("|---|---|---|")
    for where, by_kind in results.items():
        for kind, values in by_kind.items():
            print(f"| {where} | {kind} | {', '.join(f'{v:.0f}' for v in values)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

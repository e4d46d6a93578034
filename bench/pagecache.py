"""What writing new files costs on this machine's page cache (no fsync).

Writes COUNT files of SIZE bytes each (one ``writev`` of 16 KiB pieces, as
dlengine stores an object of one chunk) into a new directory and prints the
wall time and the process's user and system CPU. Run it a few times in a
row, and after ``sync; echo 3 > /proc/sys/vm/drop_caches`` and a few
seconds' wait: on a VM whose freed memory goes back to the host, writing
into memory not touched since costs several times the system CPU of writing
into recycled page cache (bench/RESULTS.md, 2026-12-03). Every tool meets
it; which one meets it depends on the minute.

``--sync-every N`` makes each N files durable with one syncfs(2), as
dlengine does a batch; ``--drop`` then lets their pages go
(``posix_fadvise`` DONTNEED, as dlengine does for every object once
durable): the next files are written into recycled pages, not new memory.

    python3 bench/pagecache.py --dir /tmp/pc --count 1000 --size 1MiB
    python3 bench/pagecache.py --dir /tmp/pc2 --count 1000 --size 1MiB --sync-every 64 [--drop]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dlengine.storage import durable

PIECE = 16 << 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", required=True, help="a new directory to write into (removed after)")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--size", default="1MiB", help="bytes per file: N, NKiB or NMiB")
    parser.add_argument("--keep", action="store_true", help="keep the files (their pages stay cached)")
    parser.add_argument("--sync-every", type=int, default=0, help="one syncfs(2) per N files (0: none)")
    parser.add_argument("--drop", action="store_true", help="after each syncfs, let those files' pages go")
    args = parser.parse_args()
    size = _size(args.size)
    data = os.urandom(size)
    pieces = [data[i : i + PIECE] for i in range(0, size, PIECE)]
    os.makedirs(args.dir)
    before, start = os.times(), time.monotonic()
    for i in range(args.count):
        fd = os.open(os.path.join(args.dir, f"f{i}"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.writev(fd, pieces)
        finally:
            os.close(fd)
        if args.sync_every and (i + 1) % args.sync_every == 0:
            _sync(args.dir, [os.path.join(args.dir, f"f{j}") for j in range(i + 1 - args.sync_every, i + 1)], args.drop)
    after, wall = os.times(), time.monotonic() - start
    total = args.count * size / (1 << 20)
    print(
        f"{args.count} x {size} B ({total:.0f} MiB): wall {wall:.2f} s, user {after.user - before.user:.2f} s,"
        f" system {after.system - before.system:.2f} s"
    )
    if not args.keep:
        shutil.rmtree(args.dir)


def _sync(directory: str, files: list[str], drop: bool) -> None:
    durable.syncfs(Path(directory))
    if drop:
        durable.drop_files(Path(f) for f in files)


def _size(text: str) -> int:
    for suffix, factor in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if text.endswith(suffix):
            return int(text[: -len(suffix)]) * factor
    return int(text)


if __name__ == "__main__":
    main()

"""Scratch directories of the benchmarks, emptied without deleting.

On ext4 without a journal (this machine's root file system) every create
skips the inodes freed in the last minute or five (``recently_deleted`` in
the inode allocator, which reads each one's table block): after 5,000 files
were deleted, the next run's 5,000 creates took 9 s of system time instead
of 1.8, charged to whichever tool ran next. So a run's files are moved
aside (one rename) and deleted once, after the last run.
"""

from __future__ import annotations

import time
from pathlib import Path


def set_aside(path: Path, trash: Path) -> None:
    """Move ``path`` (if it exists) into ``trash``, out of the next run's way."""
    if path.exists():
        trash.mkdir(parents=True, exist_ok=True)
        path.rename(trash / f"{path.name}-{time.monotonic_ns()}")

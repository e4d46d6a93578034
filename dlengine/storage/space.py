"""Free space on a mountpath, checked before an object is written."""

from __future__ import annotations

import os
from pathlib import Path

from dlengine import errors

__all__ = ["check_free_space", "free_bytes"]


def free_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes an unprivileged writer may still use on the file system of
    ``path`` (its nearest existing parent, as work directories are created
    on first use)."""
    where = Path(path)
    while not where.exists() and where != where.parent:
        where = where.parent
    st = os.statvfs(where)
    return st.f_bavail * st.f_frsize


def check_free_space(mountpath: str | os.PathLike[str], declared: int | None) -> None:
    """Raise ``DiskFullError`` naming both numbers when the bytes still to
    write (``declared``, None when unknown) exceed the free space of
    ``mountpath``: the download fails at once instead of filling the disk
    first. Free space can still run out later (other writers): the write's
    own ENOSPC is the final word."""
    if not declared or declared <= 0:
        return
    free = free_bytes(mountpath)
    if declared > free:
        raise errors.DiskFullError(
            f"no space left on mountpath {mountpath}: the object needs {declared} more bytes, {free} are free"
        )

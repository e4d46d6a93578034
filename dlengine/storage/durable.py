"""Making bytes durable: fsync of files and directories."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dirs(paths: Iterable[Path]) -> None:
    """fsync each distinct directory once (a batch of renames)."""
    for path in set(paths):
        try:
            fsync_dir(path)
        except FileNotFoundError:
            pass

"""One supervisor per home: an flock on ``$DLENGINE_HOME/supervisor.lock``.

The kernel drops the lock when its holder dies, however it dies, so a
``kill -9`` never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from dlengine.config import make_home


class HomeLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False if someone holds it."""
        make_home(self.path.parent)  # `run` on a fresh home: created private, as the ledger makes it
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def holder(self) -> int | None:
        """Pid written by the current holder, if readable."""
        try:
            return int(self.path.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def is_held(self) -> bool:
        if self._fd is not None:
            return True
        if self.acquire():
            self.release()
            return False
        return True

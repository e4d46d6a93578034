"""The worker processes of one mountpath."""

from __future__ import annotations

import multiprocessing
import os
import secrets
from multiprocessing.process import BaseProcess
from pathlib import Path

from dlengine.config import Settings
from dlengine.supervisor.worker import worker_main

# spawn, not fork: the supervisor may hold threads and an SQLite connection.
_CTX = multiprocessing.get_context("spawn")


class MountpathPool:
    """Keeps ``size`` worker processes alive for one mountpath."""

    def __init__(self, settings: Settings, mountpath_id: int, mountpath: Path, size: int) -> None:
        self.settings = settings
        self.mountpath_id = mountpath_id
        self.mountpath = mountpath
        self.size = size
        self.workers: dict[str, BaseProcess] = {}  # owner -> process

    def fill(self) -> None:
        while len(self.workers) < self.size:
            owner = f"{os.uname().nodename}:{self.mountpath_id}:{secrets.token_hex(4)}"
            args = (self.settings, self.mountpath_id, str(self.mountpath), owner, os.getpid())
            proc = _CTX.Process(target=worker_main, args=args, name=f"dlengine-worker-{owner}", daemon=False)
            proc.start()
            self.workers[owner] = proc

    def reap(self) -> list[str]:
        """Forget dead workers; returns their owner ids."""
        dead = [owner for owner, proc in self.workers.items() if not proc.is_alive()]
        for owner in dead:
            self.workers.pop(owner).join(0)
        return dead

    def owners(self) -> list[str]:
        return list(self.workers)

    def terminate(self) -> None:
        for proc in self.workers.values():
            if proc.is_alive():
                proc.terminate()

    def join(self, timeout: float) -> None:
        for proc in self.workers.values():
            proc.join(timeout)
            if proc.is_alive():
                proc.kill()
                proc.join(1)
        self.workers.clear()

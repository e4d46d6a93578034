"""The worker processes of one mountpath.

The first workers of ``run`` are the spares it forked before it had a
thread or a ledger (``prespawn``). Any other worker is a fresh interpreter
(``subprocess``, not ``fork``: by then the supervisor holds threads and an
SQLite connection) that imports only the worker's modules: not
multiprocessing's ``spawn``, which re-imports the parent's ``__main__`` (the
whole CLI) in every worker and starts a resource-tracker process besides.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path

from dlengine.config import Settings
from dlengine.supervisor import prespawn

WORKER_LOG_FORMAT = "%(asctime)s worker[%(process)d] %(message)s"
# logging first, at the supervisor's level (run --quiet: the workers too); the
# worker's own basicConfig then leaves it as it is
_ENTRY = (
    f"import logging, sys; logging.basicConfig(level=int(sys.argv.pop(1)), format={WORKER_LOG_FORMAT!r});"
    " from dlengine.supervisor.worker import main; main()"
)


def settings_arg(settings: Settings) -> str:
    """Settings as the worker's command line carries them (JSON)."""
    fields = dataclasses.asdict(settings)
    fields["home"] = str(settings.home)
    fields["mountpaths"] = [str(p) for p in settings.mountpaths]
    return json.dumps(fields)


def settings_from_arg(text: str) -> Settings:
    fields = json.loads(text)
    fields["home"] = Path(fields["home"])
    fields["mountpaths"] = tuple(Path(p) for p in fields["mountpaths"])
    return Settings(**fields)


class MountpathPool:
    """Keeps ``size`` worker processes alive for one mountpath."""

    def __init__(self, settings: Settings, mountpath_id: int, mountpath: Path, size: int, wake_fd: int = -1) -> None:
        """``wake_fd``: the write end of the supervisor's wake pipe, which a
        worker pokes when a job it reported has ended."""
        self.settings = settings
        self.wake_fd = wake_fd
        self.mountpath_id = mountpath_id
        self.mountpath = mountpath
        self.size = size
        self.workers: dict[str, subprocess.Popen[bytes] | prespawn.Spare] = {}  # owner -> process

    def fill(self) -> None:
        config = settings_arg(self.settings)
        while len(self.workers) < self.size:
            owner = f"{os.uname().nodename}:{self.mountpath_id}:{secrets.token_hex(4)}"
            level = str(logging.getLogger().getEffectiveLevel())
            args = [level, config, str(self.mountpath_id), str(self.mountpath), owner, str(os.getpid())]
            args.append(str(self.wake_fd))
            spares_wake = prespawn.wake()  # (the spares hold its write end: only then can one be ours)
            proc = prespawn.take(args) if spares_wake is not None and spares_wake.w == self.wake_fd >= 0 else None
            self.workers[owner] = proc or subprocess.Popen(
                [sys.executable, "-c", _ENTRY, *args],
                stdin=subprocess.DEVNULL,
                pass_fds=(self.wake_fd,) if self.wake_fd >= 0 else (),
            )

    def reap(self) -> list[str]:
        """Forget dead workers; returns their owner ids."""
        dead = [owner for owner, proc in self.workers.items() if proc.poll() is not None]
        for owner in dead:
            self.workers.pop(owner)
        return dead

    def owners(self) -> list[str]:
        return list(self.workers)

    def terminate(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.terminate()

    def join(self, timeout: float) -> None:
        for proc in self.workers.values():
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                try:
                    proc.wait(1)
                except subprocess.TimeoutExpired:
                    pass
        self.workers.clear()

"""The worker processes of one mountpath.

The first workers of ``run`` are the spares it forked before it had a
thread or a ledger (``prespawn``). Any other worker is a fresh interpreter
(``subprocess``, not ``fork``: by then the supervisor holds threads and an
SQLite connection) that imports only the worker's modules: not
multiprocessing's ``spawn``, which re-imports the parent's ``__main__`` (the
whole CLI) in every worker and starts a resource-tracker process besides.

A worker's stderr comes through a pipe that the pool copies to its own
stderr (``_Tail``), keeping the last lines: a worker that dies before it
came up (a broken install, a module missing, a setting it cannot use) is
started again only after a back-off (``BACKOFF_FIRST`` doubling up to
``BACKOFF_MAX``), and after ``GIVE_UP_AFTER`` such deaths in a row the
pool gives up (``failure`` says why: its exit and its last lines). A worker
that came up (lived ``CAME_UP`` seconds, or held rows when it died: it was
mid-work, a ``kill -9``) resets the count.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from dlengine.config import Settings
from dlengine.redact import redact
from dlengine.supervisor import prespawn

if TYPE_CHECKING:  # imported to start a fresh worker: a supervisor whose workers are its spares needs none
    import subprocess

WORKER_LOG_FORMAT = "%(asctime)s worker[%(process)d] %(message)s"
# the collector set for start-up (dlengine/startup.py; worker_main calls done);
# logging first, at the supervisor's level (run --quiet: the workers too); the
# worker's own basicConfig then leaves it as it is
_ENTRY = (
    "from dlengine import startup; startup.begin(); import logging, sys;"
    f" logging.basicConfig(level=int(sys.argv.pop(1)), format={WORKER_LOG_FORMAT!r});"
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


CAME_UP = 5.0  # seconds a worker lives to count as started (not an early death)
BACKOFF_FIRST = 0.2  # seconds before a worker replaces one that died early...
BACKOFF_MAX = 5.0  # ... doubling with each early death in a row, up to this
GIVE_UP_AFTER = 5  # early deaths in a row after which the pool starts no more
TAIL_LINES = 20  # of a worker's stderr, kept for the reason it died


@dataclasses.dataclass(frozen=True)
class Death:
    """A worker that ended by itself: how, after how long, its last words."""

    owner: str
    lived: float  # seconds
    exit: str  # "exit code 1", "killed by SIGKILL"
    tail: list[str]  # its last lines on stderr, redacted

    @property
    def said(self) -> str:
        """Its last three lines on stderr in one line ("" if it wrote none)."""
        return " | ".join(line.strip() for line in self.tail[-3:])

    def how(self) -> str:
        """Its exit, and its last lines on stderr if it wrote any, in one line."""
        return f"{self.exit}; its last lines on stderr: {self.said}" if self.said else self.exit


class _Tail(threading.Thread):
    """Copies a worker's stderr to ours (where it wrote before its stderr
    was a pipe) through ``redact`` (a traceback can quote a signed link),
    keeping the last TAIL_LINES lines."""

    def __init__(self, fd: int) -> None:
        super().__init__(name="worker-stderr", daemon=True)
        self._fd = fd
        self._lines: deque[str] = deque(maxlen=TAIL_LINES)
        self.start()

    def run(self) -> None:
        with open(self._fd, "rb") as pipe:
            for raw in iter(lambda: pipe.readline(8192), b""):
                line = redact(raw.decode(errors="replace"))
                self._lines.append(line.rstrip())
                try:
                    os.write(2, line.encode())
                except OSError:  # our stderr is gone: still read, or the worker would block
                    pass

    def lines(self) -> list[str]:
        """Its last lines (those not blank), once it ended."""
        self.join(1)  # the rest of what it wrote before it died
        return [line for line in self._lines if line.strip()]


@dataclasses.dataclass
class _Started:
    proc: subprocess.Popen[bytes] | prespawn.Spare
    tail: _Tail
    at: float = dataclasses.field(default_factory=time.monotonic)


def _timed_out() -> type[Exception]:
    """``subprocess.TimeoutExpired``, imported when a wait timed out (an
    except clause's class is looked up only then): raised by a fresh
    worker's ``Popen.wait`` and a spare's, which imports it too."""
    import subprocess

    return subprocess.TimeoutExpired


def _exit(code: int) -> str:
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


class MountpathPool:
    """Keeps ``wanted`` worker processes alive for one mountpath, at most
    ``size``: as many as its queued work can use (``sizing``), growing when
    more comes (``want``), never shrinking."""

    def __init__(
        self, settings: Settings, mountpath_id: int, mountpath: Path, size: int, wake_fd: int = -1, wanted: int = -1
    ) -> None:
        """``wake_fd``: the write end of the supervisor's wake pipe, which a
        worker pokes when a job it reported has ended. ``wanted``: workers
        to start with (-1: ``size``)."""
        self.settings = settings
        self.wake_fd = wake_fd
        self.mountpath_id = mountpath_id
        self.mountpath = mountpath
        self.size = size
        self.wanted = size if wanted < 0 else min(wanted, size)
        self.workers: dict[str, _Started] = {}  # owner -> process
        self.early_deaths = 0  # in a row
        self.last_early: Death | None = None
        self._not_before = 0.0  # (monotonic) no worker starts sooner: the back-off

    @property
    def full(self) -> bool:
        """It wants as many workers as it may have: no more to ask."""
        return self.wanted >= self.size

    def want(self, count: int) -> None:
        """At least ``count`` workers (at most ``size``), from the next ``fill``."""
        self.wanted = max(self.wanted, min(count, self.size))

    def fill(self) -> None:
        """Start the missing workers, unless the back-off says not yet."""
        if len(self.workers) >= self.wanted or time.monotonic() < self._not_before:
            return
        config = settings_arg(self.settings)
        while len(self.workers) < self.wanted:
            owner = f"{os.uname().nodename}:{self.mountpath_id}:{os.urandom(4).hex()}"
            level = str(logging.getLogger().getEffectiveLevel())
            args = [level, config, str(self.mountpath_id), str(self.mountpath), owner, str(os.getpid())]
            args.append(str(self.wake_fd))
            self.workers[owner] = self._start(args)

    def _start(self, args: list[str]) -> _Started:
        spares_wake = prespawn.wake()  # (the spares hold its write end: only then can one be ours)
        spare = prespawn.take(args) if spares_wake is not None and spares_wake.w == self.wake_fd >= 0 else None
        if spare is not None:
            return _Started(spare, _Tail(spare.stderr))
        import subprocess

        r, w = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _ENTRY, *args],
                stdin=subprocess.DEVNULL,
                stderr=w,
                pass_fds=(self.wake_fd,) if self.wake_fd >= 0 else (),
            )
        except BaseException:
            os.close(r)
            raise
        finally:
            os.close(w)
        return _Started(proc, _Tail(r))

    def reap(self) -> list[Death]:
        """Forget dead workers; returns how each died."""
        deaths = []
        for owner, started in list(self.workers.items()):
            code = started.proc.poll()
            if code is not None:
                del self.workers[owner]
                deaths.append(Death(owner, time.monotonic() - started.at, _exit(code), started.tail.lines()))
        return deaths

    def count(self, deaths: list[Death], mid_work: bool) -> None:
        """The back-off after ``deaths`` (of ``reap``): an early death (it
        lived less than CAME_UP seconds and, ``mid_work`` False, held no
        rows) doubles it, any other death resets it."""
        for death in deaths:
            if mid_work or death.lived >= CAME_UP:
                self.early_deaths = 0
            else:
                self.early_deaths += 1
                self.last_early = death
        backoff = BACKOFF_FIRST * 2 ** (self.early_deaths - 1) if self.early_deaths else 0.0
        self._not_before = time.monotonic() + min(backoff, BACKOFF_MAX)

    @property
    def gave_up(self) -> bool:
        return self.early_deaths >= GIVE_UP_AFTER

    def failure(self) -> str:
        """Why the pool gave up, in one line: the last early death's exit
        and last lines on stderr (its whole tail: ``last_early.tail``)."""
        last = self.last_early
        assert last is not None
        return (
            f"the workers of mountpath {self.mountpath} died at start {self.early_deaths} times in a row"
            f" (the last: {last.exit}): {last.said or 'nothing on stderr'}"
        )

    def owners(self) -> list[str]:
        return list(self.workers)

    def terminate(self) -> None:
        for started in self.workers.values():
            if started.proc.poll() is None:
                started.proc.terminate()

    def join(self, timeout: float) -> None:
        for started in self.workers.values():
            proc = started.proc
            try:
                proc.wait(timeout)
            except _timed_out():
                proc.kill()
                try:
                    proc.wait(1)
                except _timed_out():
                    pass
            started.tail.join(1)  # its last lines copied out
        self.workers.clear()

"""Worker processes made before the command line is even parsed.

A worker's imports (pycurl, sqlite3, the data path) cost about as much as
the command line's own, and a fresh interpreter per worker paid them once
more each: on two busy cores that was most of ``run``'s start-up. So
``run`` (and the background supervisor, which is ``run --linger``) first
imports the worker's modules, then forks its workers as *spares*, while the
process is still a single thread with no ledger open and nothing else
imported: each spare waits on a pipe for one line, the arguments a pool
would have put on a worker's command line. The pool takes a spare when it
needs a worker (``take``) and sends that line; a spare nobody takes reads
end-of-file (this process ended, or ``discard``) and exits without a word.
Workers the pool starts later (one died, work came to a supervisor that
had none, or more than its first workers can use) are fresh interpreters
as before, once no spare is left. A spare's stderr is a pipe from the
start, which the pool reads as it reads a fresh worker's.

Only what must be known before forking is read here (the settings,
whether another supervisor holds the home, and the rows queued in the
ledger: a cron ``run`` with nothing to do forks none, and its supervisor
starts no workers; a small job forks as many as its pool will start,
``sizing``: one object, one worker); any doubt means no spares (or, about
the ledger, spares as usual: as many as the pools may have).
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence

from dlengine import startup
from dlengine.supervisor.wake import Wake

SPARE_NAME = b"dlengine-worker"  # its name in /proc (comm): a fork keeps the command line

_spares: list[Spare] = []
_wake: Wake | None = None
_adopted = False  # the supervisor owns (and closes) the wake pipe


class Spare:
    """A forked worker, as much of ``subprocess.Popen`` as the pool uses."""

    def __init__(self, pid: int, pipe: int, stderr: int) -> None:
        self.pid = pid
        self.pipe = pipe  # write end: the arguments, then closed
        self.stderr = stderr  # read end of its stderr (the pool's to read, or closed by discard)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = self.pid, 0
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                import subprocess

                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0)
            _until_exit(self.pid, left)
        assert self.returncode is not None
        return self.returncode

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def close_pipe(self) -> None:
        if self.pipe >= 0:
            os.close(self.pipe)
            self.pipe = -1


def _until_exit(pid: int, timeout: float | None) -> None:
    """Wait until the child ``pid`` has exited (not reaped) or ``timeout``:
    woken by its exit through a pidfd (Linux 5.3 and later), else after
    at most 10 ms (a run's end waited up to that much per worker)."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # (no pidfd here, or it was reaped meanwhile: poll says)
        time.sleep(0.01 if timeout is None else min(0.01, timeout))
        return
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)


def early(argv: Sequence[str]) -> None:
    """Fork the spares if ``argv`` is a local ``run`` in a single-threaded
    process; never raises (the command itself reports bad settings and a
    busy home)."""
    global _wake
    if not argv or argv[0] != "run" or any(a.startswith("--executor") for a in argv) or _spares:
        return
    if threading.active_count() > 1:  # (a test calling main in-process): no fork of threads
        return
    try:
        from dlengine.config import load_settings
        from dlengine.supervisor.lock import HomeLock

        settings = load_settings()
        if settings.remote_executor or HomeLock(settings.lock_path).is_held():
            return
        from dlengine.ledger.ledger import queued_rows, surely_idle

        if surely_idle(settings.ledger_path):
            return  # (a cron run with nothing to do): the supervisor starts workers only if work comes
        from dlengine.supervisor import sizing  # (a busy ledger only: a cron run pays no import for it)

        queued = queued_rows(settings.ledger_path, sizing.limit(settings, len(settings.mountpaths)))
        count = sizing.spares(settings, queued)
        if not count:
            return  # (nothing queued: only an aborted job still stopping)
        import dlengine.supervisor.pool  # (the supervisor's anyway) the spares' log format and settings
        import dlengine.supervisor.worker  # noqa: F401 - imported once, for every spare

        _wake = Wake()
        for _ in range(count):
            _spares.append(_fork())
    except Exception:
        logging.getLogger("dlengine.supervisor").debug("no spare workers", exc_info=True)
        discard()


def _fork() -> Spare:
    r, w = os.pipe()
    err_r, err_w = os.pipe()  # its stderr, as a pool's worker has (the reason it died, if it does)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        os.close(r)
        os.close(err_w)
        return Spare(pid, w, err_r)
    code = 1
    try:  # the child: never returns into the command line
        os.close(w)
        os.close(err_r)
        os.dup2(err_w, 2)
        os.close(err_w)
        for spare in _spares:  # the others' pipes: their end-of-file is not ours to hold
            spare.close_pipe()
            os.close(spare.stderr)
        code = _spare_main(r)
    except BaseException:  # noqa: BLE001 - as an interpreter would: the reason on its stderr (the pool reads it)
        traceback.print_exc()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _spare_main(pipe: int) -> int:
    """A spare: wait for the arguments, then be the worker."""
    import ctypes

    startup.done()  # (the worker's modules came with the fork: startup.py)
    try:
        ctypes.CDLL(None).prctl(15, SPARE_NAME, 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    _warm()
    line = b""
    while not line.endswith(b"\n"):
        got = os.read(pipe, 65536)
        if not got:
            return 0  # nobody took it
        line += got
    os.close(pipe)
    from dlengine.supervisor.pool import WORKER_LOG_FORMAT
    from dlengine.supervisor.worker import main

    args = json.loads(line)
    logging.basicConfig(level=int(args[0]), format=WORKER_LOG_FORMAT, force=True)
    sys.argv = ["dlengine-worker", *args[1:]]
    main()  # ends the process itself
    return 0


def _warm() -> None:
    """While the spare waits, what its worker would pay once on the way to
    its first claim: libcurl's first handle of the process (~2 ms on this
    box, the next ones ~20 us)."""
    import pycurl

    pycurl.Curl().close()


def wake() -> Wake | None:
    """The wake pipe whose write end the spares inherited, or None
    without spares."""
    return _wake


def adopt_wake() -> Wake | None:
    """``wake()``, which the supervisor now owns: it waits on it and
    closes it."""
    global _adopted
    _adopted = _wake is not None
    return _wake


def take(args: Sequence[str]) -> Spare | None:
    """A spare that goes on as a worker with ``args`` (a worker's command
    line; its wake descriptor must be ``wake().w``), or None if none is
    left or it died meanwhile."""
    while _spares:
        spare = _spares.pop()
        try:
            os.write(spare.pipe, json.dumps(list(args)).encode() + b"\n")
        except OSError:  # it died (killed, or out of memory): the next one, or a spawn
            spare.close_pipe()
            os.close(spare.stderr)
            spare.wait()
            continue
        spare.close_pipe()
        return spare
    return None


def discard() -> None:
    """Spares nobody took read end-of-file and exit (reaped when they have)."""
    global _wake, _adopted
    while _spares:
        spare = _spares.pop()
        spare.close_pipe()
        os.close(spare.stderr)
        try:
            spare.wait(5)
        except Exception:  # noqa: BLE001 - it still goes; the kernel reaps it with us
            spare.kill()
    if _wake is not None and not _adopted:
        _wake.close()
    _wake, _adopted = None, False

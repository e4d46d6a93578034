"""Starting a supervisor in the background (``dlengine run --linger``),
for the commands that submit: without the supervisor's own modules (its
pools, spares, recovery), ~6-10 ms of a ``submit``'s start on this box.

The command line (``cli.entry``) forks it: the child is already an
interpreter with a good half of the supervisor's modules imported (the
settings, the ledger, the command line, json, pathlib, sqlite3), where a
fresh ``python -m dlengine run`` paid ~15 ms for the interpreter and
~30 ms for those imports again, about a quarter of a one-object job's CPU
(issue 17). Only when that is safe (``_forkable``): this process is the
program, not a caller's (the Python API, a test in-process), it runs one
thread, and it holds no file but its standard streams: the caller's ledger
connection is closed first (SQLite's connections must not cross a fork),
and a descriptor the command inherited (a pipe its caller waits on) stays
out of a supervisor that lingers. Otherwise a fresh interpreter, as before.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from dlengine import process
from dlengine.config import Settings
from dlengine.supervisor.lock import HomeLock


def start_background(settings: Settings, release: Callable[[], None] | None = None) -> bool:
    """Start a detached supervisor for this home unless one runs already.
    Returns True if one was started. ``release``: closes the caller's
    ledger connections (it may open new ones later); given, the supervisor
    may be forked from this process."""
    if HomeLock(settings.lock_path).is_held():
        return False
    settings.home.mkdir(parents=True, exist_ok=True)
    # private like the ledger: a log may name links and buckets
    fd = os.open(settings.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        if release is not None and process.is_the_program():
            release()
            if _forkable(fd):
                _fork(settings, fd)
                return True
        _spawn(settings, fd)
    finally:
        os.close(fd)
    return True


def _args(settings: Settings) -> list[str]:
    return ["run", "--linger", str(settings.linger_seconds), "--quiet"]


def _spawn(settings: Settings, logfile: int) -> None:
    """A fresh interpreter (``subprocess`` imported for it only)."""
    import subprocess

    subprocess.Popen(
        [sys.executable, "-m", "dlengine", *_args(settings)],
        stdin=subprocess.DEVNULL,
        stdout=logfile,
        stderr=logfile,
        start_new_session=True,
        close_fds=True,
    )


def _forkable(logfile: int) -> bool:
    """One thread, and no open descriptor but the standard streams and
    ``logfile`` (no ledger connection, nothing inherited: those would live
    on in the supervisor, and a connection must not cross a fork)."""
    import threading

    if threading.active_count() > 1 or not hasattr(os, "fork"):
        return False
    return open_descriptors() == {0, 1, 2, logfile}


def open_descriptors() -> set[int] | None:
    """This process's open file descriptors (None without /proc)."""
    try:
        fds = os.listdir("/proc/self/fd")  # (its own descriptor of the listing: closed again when checked)
    except OSError:
        return None
    found = set()
    for name in fds:
        try:
            os.fstat(int(name))
        except OSError:  # (the listing's own, closed by now)
            continue
        found.add(int(name))
    return found


def _fork(settings: Settings, logfile: int) -> None:
    """The supervisor as a child of this process, in a session of its own,
    its output in the log; this process goes on at once."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if os.fork():
        return
    code = 1
    try:  # the child: never returns into the command that forked it
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(logfile, 1)
        os.dup2(logfile, 2)
        os.close(logfile)
        code = _supervise(_args(settings))
    except BaseException:  # noqa: BLE001 - as an interpreter would: the reason in the log
        import traceback

        traceback.print_exc()
    finally:
        try:
            process.exit_at_once(code)
        finally:
            os._exit(code)


def _supervise(args: list[str]) -> int:
    """``dlengine run ARGS`` in this (forked) process, as ``cli.entry``
    runs it; then the threads it left that are not daemons, as an
    interpreter's exit would."""
    import threading

    from dlengine.cli import program  # (``main`` names the module dlengine.cli.main by now)

    sys.argv = [sys.argv[0], *args]
    code = program(args)
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    return code

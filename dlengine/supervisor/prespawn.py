"""Worker processes started before the command line is even parsed.

A worker is a fresh interpreter whose imports (pycurl, sqlite3, the data
path) take about as long as the command line's own: started one after the
other, they were the two halves of ``run``'s fixed cost. ``run`` (and the
background supervisor, which is ``run --linger``) therefore starts its
workers first thing, as *spares*: each imports the worker's modules and
then waits for one line on its stdin, the arguments a pool would have put
on its command line. The pool takes a spare when it needs a worker
(``take``) and sends that line; a spare nobody takes reads end-of-file when
this process ends or ``discard`` runs, and exits without a word.

Only what must be known before spawning is read here (the settings, and
whether another supervisor holds the home), with modules that cost
nothing; any doubt means no spares, and the pool spawns as before.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Sequence

from dlengine.supervisor.wake import Wake

SPARE_ENTRY = "from dlengine.supervisor.worker import main_spare; main_spare()"

_spares: list[subprocess.Popen[bytes]] = []
_wake: Wake | None = None
_adopted = False  # the supervisor owns (and closes) the wake pipe


def early(argv: Sequence[str]) -> None:
    """Start the spares if ``argv`` is a local ``run``; never raises (the
    command itself reports bad settings and a busy home)."""
    global _wake
    if not argv or argv[0] != "run" or any(a.startswith("--executor") for a in argv) or _spares:
        return
    try:
        from dlengine.config import load_settings
        from dlengine.supervisor.lock import HomeLock

        settings = load_settings()
        if settings.remote_executor or HomeLock(settings.lock_path).is_held():
            return
        count = settings.workers_for_each_mountpath() * len(settings.mountpaths)
        _wake = Wake()
        for _ in range(count):
            _spares.append(
                subprocess.Popen([sys.executable, "-c", SPARE_ENTRY], stdin=subprocess.PIPE, pass_fds=(_wake.w,))
            )
    except Exception:
        logging.getLogger("dlengine.supervisor").debug("no spare workers", exc_info=True)
        discard()


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


def take(args: Sequence[str]) -> subprocess.Popen[bytes] | None:
    """A spare that goes on as a worker with ``args`` (a worker's command
    line; its wake descriptor must be ``wake().w``), or None if none is
    left or it died meanwhile."""
    while _spares:
        proc = _spares.pop()
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(list(args)).encode() + b"\n")
            proc.stdin.close()
        except OSError:  # it died (killed, or out of memory): the next one, or a spawn
            proc.wait()
            continue
        return proc
    return None


def discard() -> None:
    """Spares nobody took read end-of-file and exit (not waited for: one
    may still be importing)."""
    global _wake, _adopted
    while _spares:
        proc = _spares.pop()
        if proc.stdin is not None:
            proc.stdin.close()
    if _wake is not None and not _adopted:
        _wake.close()
    _wake, _adopted = None, False

"""The cyclic garbage collector while a command starts.

Before its first byte, ``download URL ais://b --wait`` imports ~150
modules and makes ~29,000 container objects (modules, functions, classes,
the records' fields), and the collector, run every 700 new ones, walked
them ~35 times over: 9-16 ms of the command on this box, for nothing (what
start-up makes lives as long as the process). So the program's entry
(``cli.entry``) raises the first generation's threshold (``begin``), and
the command calls ``done`` once it has started (the supervisor before its
loop, a spare worker when forked, a command before it follows a job):
what start-up made is frozen (``gc.freeze``: never walked again, which
the gc documentation advises before a fork too; the few cycles it left
stay, a fixed amount) and the thresholds are the interpreter's again. A
command that never calls ``done`` still collects, only less often.

In-process callers (the tests, the Python API) never call ``begin``:
``done`` is then nothing.
"""

from __future__ import annotations

import gc

START_THRESHOLD = 100_000  # new container objects before a collection while starting (the default: 700)

_saved: tuple[int, int, int] | None = None  # the interpreter's thresholds, while starting


def begin() -> None:
    """Start-up: the first generation collected only past START_THRESHOLD."""
    global _saved
    if _saved is None:
        _saved = gc.get_threshold()
        gc.set_threshold(START_THRESHOLD, _saved[1], _saved[2])


def done() -> None:
    """Start-up is over (idempotent; nothing unless ``begin`` was called):
    what it made is frozen, the interpreter's thresholds come back."""
    global _saved
    if _saved is not None:
        gc.freeze()
        gc.set_threshold(*_saved)
        _saved = None


def starting() -> bool:
    return _saved is not None

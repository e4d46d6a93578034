"""Process-wide matters: ending a process at once, without the
interpreter's teardown, a worker's malloc keeping the memory it frees, and
its threads' names.

Freeing every module, curl handle and the ledger's connection took tens of
milliseconds of every short command and ~0.1 s of a worker's shutdown,
when what matters is already in the ledger and on disk: the CLI (when only
its main thread is left) and every worker end this way instead.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

_program = False  # this process is the dlengine command line (``cli.entry``), not a caller's


def be_the_program() -> None:
    """Said by ``cli.entry``: this process is the command line, which may
    fork itself (``supervisor.background``); a caller's process (the
    Python API, a test calling ``cli.main``) never is."""
    global _program
    _program = True


def is_the_program() -> bool:
    return _program


def exit_at_once(code: int) -> NoReturn:
    """Flush logs and output (a reader that went away is not ours to
    answer), save coverage when the suite measures it, then ``os._exit``.
    Logs only when logging was imported (most commands log nothing)."""
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.shutdown()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        pass
    coverage = sys.modules.get("coverage")
    current = getattr(getattr(coverage, "Coverage", None), "current", lambda: None)()
    if current is not None:
        current.stop()
        current.save()
    os._exit(code)


# mallopt(3) parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
KEEP_FREED = 64 << 20  # bytes of free memory a heap keeps at its top
_MMAP_ABOVE = 32 << 20  # allocations this large or larger are mapped on their own (glibc's maximum)


def keep_freed_memory() -> None:
    """Have glibc's malloc keep the memory a worker frees instead of giving
    it back to the kernel at once. A worker receives every object in
    libcurl's 16 KiB pieces (up to a chunk of them held per object in
    flight), frees them when the object is written, and allocates as many
    again for the next: with glibc's default (a heap's top given back once
    128 KiB of it are free) each object's pages went back and were faulted
    in again, ~30 page faults per 1 MiB object, each dearer on a VM whose
    freed memory goes back to its host. The threshold for mapping large
    allocations on their own is fixed too (setting the first stops glibc
    from raising it as it goes), so a 4 MiB read of a file being hashed
    comes from the heap, not from a new mapping each time. Best effort:
    nothing where the C library has no mallopt (musl's does nothing)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_TRIM_THRESHOLD, KEEP_FREED)
    mallopt(_M_MMAP_THRESHOLD, _MMAP_ABOVE)


def name_thread(name: str) -> None:
    """The calling thread's name as the system shows it (``top -H``,
    ``ps -L``, ``perf``; at most 15 bytes): a worker's threads are told
    apart without a Python profiler (``bench/floors.py`` splits a run's
    CPU by them). Best effort: nothing happens where /proc is not there."""
    import threading

    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as comm:
            comm.write(name[:15])
    except OSError:
        pass

"""Ending a process at once, without the interpreter's teardown.

Freeing every module, curl handle and the ledger's connection took tens of
milliseconds of every short command and ~0.1 s of a worker's shutdown,
when what matters is already in the ledger and on disk: the CLI (when only
its main thread is left) and every worker end this way instead.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn


def exit_at_once(code: int) -> NoReturn:
    """Flush logs and output (a reader that went away is not ours to
    answer), save coverage when the suite measures it, then ``os._exit``."""
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

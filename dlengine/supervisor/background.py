"""Starting a supervisor in the background (``dlengine run --linger``),
for the commands that submit: without the supervisor's own modules (its
pools, spares, recovery), ~6-10 ms of a ``submit``'s start on this box."""

from __future__ import annotations

import os
import subprocess
import sys

from dlengine.config import Settings
from dlengine.supervisor.lock import HomeLock


def start_background(settings: Settings) -> bool:
    """Start a detached supervisor for this home unless one runs already.
    Returns True if one was started."""
    if HomeLock(settings.lock_path).is_held():
        return False
    settings.home.mkdir(parents=True, exist_ok=True)
    # private like the ledger: a log may name links and buckets
    fd = os.open(settings.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "ab") as logfile:
        subprocess.Popen(
            [sys.executable, "-m", "dlengine", "run", "--linger", str(settings.linger_seconds), "--quiet"],
            stdin=subprocess.DEVNULL,
            stdout=logfile,
            stderr=logfile,
            start_new_session=True,
            close_fds=True,
        )
    return True

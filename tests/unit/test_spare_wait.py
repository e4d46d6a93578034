"""A forked worker (``prespawn.Spare``) is waited for by its exit, through
a pidfd, not by looking every 10 ms: a run's end waited up to that much
per worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from dlengine.supervisor import prespawn


def _child(code: str) -> prespawn.Spare:
    """A child process of this one, as the pool holds a spare (no pipes)."""
    pid = os.posix_spawn(sys.executable, [sys.executable, "-c", code], dict(os.environ))
    return prespawn.Spare(pid, -1, -1)


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="no pidfd on this platform")
def test_waited_for_by_its_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    spare = _child("import sys, time; time.sleep(0.3); sys.exit(3)")

    def no_polling(seconds: float) -> None:
        raise AssertionError(f"slept {seconds} s to look again")

    monkeypatch.setattr(prespawn.time, "sleep", no_polling)
    assert spare.wait(30) == 3
    assert spare.poll() == 3


def test_a_timeout_still_expires() -> None:
    spare = _child("import time; time.sleep(30)")
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        spare.wait(0.2)
    assert 0.2 <= time.monotonic() - start < 10
    spare.kill()
    assert spare.wait(30) == -9

"""``process.keep_freed_memory``: a worker's malloc keeps the pages it
frees, so receiving object after object in libcurl's 16 KiB pieces does
not fault them in again each time. Measured in fresh interpreters (the
setting is process-wide), by the page faults of the thread that does it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

_PROGRAM = """
import resource, sys, threading
from dlengine import process
if sys.argv[1] == "keep":
    process.keep_freed_memory()
faults = []
def receive():
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(50):  # 50 objects of 4 MiB, each in 16 KiB pieces held until it is written
        pieces = [bytes(16384) for _ in range(256)]
        del pieces
    faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
thread = threading.Thread(target=receive)  # (a thread's own arena, as the libcurl loop's)
thread.start()
thread.join()
print(faults[0])
"""


def _faults(mode: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}  # (this checkout's dlengine)
    done = subprocess.run([sys.executable, "-c", _PROGRAM, mode], capture_output=True, text=True, check=True, env=env)
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_pieces_are_reused_not_faulted_in_again() -> None:
    default, kept = _faults("default"), _faults("keep")
    pages = 50 * 256 * 16384 // 4096  # every piece of every object
    if default < pages // 4:
        pytest.skip(f"this C library keeps freed memory by itself ({default} faults)")
    assert kept < pages // 10 < default  # about one object's worth, once

"""``run`` starts its workers before it imports the rest of itself
(``supervisor.prespawn``): the workers it runs are those spares, a spare
nobody takes exits without a word, and a ``run`` that finds another
supervisor starts none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dlengine.supervisor import prespawn
from harness.httpd import Fault, TestHTTPServer
from tests.conftest import Home, _lock_holder, wait_for, worker_pids


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def test_the_workers_of_run_are_its_spares(home: Home, httpd: TestHTTPServer) -> None:
    httpd.put_generated("/slow.bin", 400_000, seed=1)
    httpd.set_fault("/slow.bin", Fault(rate=200_000))  # two seconds: the workers are there to look at
    home.env["DLENGINE_WORKERS"] = "2"
    job_id = home.submit({"type": "single", "bucket": {"name": "b"}, "link": httpd.url + "/slow.bin"})
    runner = home.spawn("run", "--quiet")
    pids = wait_for(lambda: len(worker_pids(runner.pid)) == 2 and worker_pids(runner.pid), timeout=60)
    assert all(b"main_spare" in _cmdline(pid) for pid in pids)
    assert runner.wait(60) == 0, runner.stderr.read() if runner.stderr else ""
    assert home.status(job_id)["finished_cnt"] == 1


def test_a_spare_nobody_takes_exits_quietly() -> None:
    spare = subprocess.run(
        [sys.executable, "-c", prespawn.SPARE_ENTRY], input=b"", capture_output=True, timeout=60, cwd=Path.cwd()
    )
    assert (spare.returncode, spare.stdout, spare.stderr) == (0, b"", b"")


def test_spares_only_for_a_local_run_of_a_free_home(
    home: Home, httpd: TestHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in home.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DLENGINE_WORKERS", "1")
    try:
        for argv in (["submit", "job.json"], ["run", "--executor", "dask://127.0.0.1:1"], []):
            prespawn.early(argv)
            assert prespawn.wake() is None, argv
        prespawn.early(["run", "--quiet"])
        assert prespawn.wake() is not None  # the control: a free home gets its spare
        prespawn.discard()
        httpd.put_generated("/slow2.bin", 400_000, seed=2)
        httpd.set_fault("/slow2.bin", Fault(rate=100_000))
        home.submit({"type": "single", "bucket": {"name": "b"}, "link": httpd.url + "/slow2.bin"})
        first = home.spawn("run", "--quiet")
        wait_for(lambda: _lock_holder(home.path) == first.pid, timeout=60)
        prespawn.early(["run", "--quiet"])  # another supervisor holds the home
        assert prespawn.take(["unused"]) is None
        assert first.wait(60) == 0
    finally:
        prespawn.discard()

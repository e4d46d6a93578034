"""The background supervisor of ``submit`` (``supervisor.background``):
forked from the command once its ledger is closed, so that it need not
start an interpreter and import again what the command has; a fresh
interpreter when the command holds any other descriptor (one it
inherited stays out of a supervisor that lingers); either way the command
returns at once, its output closed, and the job is downloaded."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path

from harness.httpd import TestHTTPServer
from tests.conftest import ROOT, Home, _lock_holder, wait_for


def _job(httpd: TestHTTPServer, name: str) -> str:
    httpd.put_generated(f"/{name}", 10_000, seed=1)
    return json.dumps({"type": "single", "bucket": {"name": "b"}, "link": f"{httpd.url}/{name}"})


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().rstrip("\0").split("\0")


def _done(home: Home, job_id: str) -> bool:
    return bool(home.status(job_id)["state"] == "finished")


def test_submit_forks_its_supervisor_and_returns_at_once(home: Home, httpd: TestHTTPServer) -> None:
    home.env["DLENGINE_LINGER"] = "60"
    res = home.cli("submit", "-", input=_job(httpd, "a.bin"))  # (its output captured: read to the end)
    assert res.returncode == 0, res.stderr
    job_id = res.stdout.strip()
    holder = wait_for(lambda: _lock_holder(home.path))  # lingering: the command's pipes were not held by it
    assert "submit" in _cmdline(holder)  # forked from the command
    assert os.getsid(holder) == holder  # in a session of its own, as a spawned one
    wait_for(lambda: _done(home, job_id))
    assert home.find("ais", "b", "a.bin") is not None
    assert "Traceback" not in (home.path / "supervisor.log").read_text()


def test_a_descriptor_the_command_inherited_stays_out_of_its_supervisor(home: Home, httpd: TestHTTPServer) -> None:
    """A pipe its caller waits on reaches end-of-file when the command
    ends, though the supervisor lingers: that one is a fresh interpreter."""
    home.env["DLENGINE_LINGER"] = "60"
    r, w = os.pipe()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "dlengine", "submit", "-"],
            env=home.env, input=_job(httpd, "b.bin"), capture_output=True, text=True, timeout=60, cwd=ROOT,
            pass_fds=(w,),
        )  # fmt: skip
        os.close(w)
        w = -1
        assert proc.returncode == 0, proc.stderr
        ready, _, _ = select.select([r], [], [], 30)
        assert ready and os.read(r, 1) == b""  # end-of-file: nobody holds its write end
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    holder = wait_for(lambda: _lock_holder(home.path))
    assert _cmdline(holder)[-4:] == ["run", "--linger", "60.0", "--quiet"]
    wait_for(lambda: _done(home, proc.stdout.strip()))

"""An object whose download kills its worker process (a segfault in a
library, the OOM killer): here the test ``kill -9``s the worker that holds
``o3.bin`` each time it runs. Every row a dying worker held counts a death
and is retried alone, so the innocent objects it took down with it finish
and only the culprit, dying alone ``DLENGINE_ATTEMPTS`` times, fails (code
``worker``, saying how its worker died). The job ends: ``run`` exits 1,
nothing is lost."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from harness.httpd import Fault, TestHTTPServer
from tests.conftest import Home, counters_match_rows, worker_pids

ATTEMPTS = 3
CHUNK = 1 << 20
SLOW = ("o1.bin", "o2.bin")  # still running when o3's worker first dies: taken down with it
BAD = "o3.bin"


def _objects(httpd: TestHTTPServer) -> dict[str, str]:
    """name -> server path: o3 (over a chunk: a work file) never ends by
    itself in the test's time, o1 and o2 take a few seconds, the rest none."""
    paths = {}
    for i in range(10):
        name, path = f"o{i}.bin", f"/poison/o{i}.bin"
        httpd.put_generated(path, 3 * CHUNK if name == BAD else 1_500_000 if name in SLOW else 20_000 + i, seed=i)
        if name == BAD:
            httpd.set_fault(path, Fault(rate=50_000))
        elif name in SLOW:
            httpd.set_fault(path, Fault(rate=600_000))
        paths[name] = path
    return paths


def _row(conn: sqlite3.Connection, job_id: str, name: str) -> sqlite3.Row:
    sql = "SELECT o.* FROM objects o JOIN jobs j ON j.seq = o.job WHERE j.id = ? AND o.name = ?"
    row: sqlite3.Row = conn.execute(sql, (job_id, name)).fetchone()
    return row


def _holder(supervisor: int, owner: str, work_file: Path) -> int | None:
    """The worker process of lease owner ``owner``: a worker started as an
    interpreter carries its owner on its command line; a spare forked by
    ``run`` before the owners were chosen (``supervisor.prespawn``) keeps
    the command line of ``run``, so it is found by the work file it writes."""
    workers = worker_pids(supervisor)
    for pid in workers:
        try:
            if owner.encode() in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                return pid
        except OSError:
            continue
    for pid in workers:
        try:
            if any(os.readlink(fd) == str(work_file) for fd in Path(f"/proc/{pid}/fd").iterdir()):
                return pid
        except OSError:
            continue
    return None


def _kill_whenever_it_runs(home: Home, runner: subprocess.Popen[str], job_id: str, timeout: float) -> list[str]:
    """SIGKILL the worker holding o3 each time o3 runs, until ``run``
    ends (or ``timeout``); the owners killed."""
    conn = home.ledger()
    killed: list[str] = []
    deadline = time.monotonic() + timeout
    while runner.poll() is None and time.monotonic() < deadline:
        row = _row(conn, job_id, BAD)
        if row["state"] == "running" and row["owner"] not in killed:
            work_file = home.mountpaths[0] / ".work" / f"{row['id']}.part"
            pid = _holder(runner.pid, row["owner"], work_file)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed.append(row["owner"])
        time.sleep(0.05)
    conn.close()
    return killed


def test_an_object_that_kills_its_worker_fails_alone_and_the_job_ends(home: Home, httpd: TestHTTPServer) -> None:
    home.env.update(DLENGINE_ATTEMPTS=str(ATTEMPTS), DLENGINE_WORKERS="2", DLENGINE_CHUNK=str(CHUNK))
    paths = _objects(httpd)
    objects = {name: httpd.url + path for name, path in paths.items()}
    job_id = home.submit({"type": "multi", "bucket": {"name": "poison"}, "objects": objects})
    runner = home.spawn("run")

    killed = _kill_whenever_it_runs(home, runner, job_id, timeout=120)
    assert runner.poll() is not None, f"run did not end after {len(killed)} kills of o3's workers"
    _, stderr = runner.communicate()
    assert runner.returncode == 1, stderr
    assert len(killed) == ATTEMPTS, killed

    conn = home.ledger()
    bad = _row(conn, job_id, BAD)
    assert (bad["state"], bad["error_code"], bad["deaths"]) == ("failed", "worker", ATTEMPTS), dict(bad)
    assert f"its worker died {ATTEMPTS} times while downloading it" in bad["error"], bad["error"]
    assert "killed by SIGKILL" in bad["error"], bad["error"]
    for name in SLOW:  # taken down with o3 once, then retried alone: not blamed
        row = _row(conn, job_id, name)
        assert (row["state"], row["deaths"]) == ("done", 1), dict(row)
    for name, path in paths.items():
        if name == BAD:
            continue
        assert _row(conn, job_id, name)["state"] == "done", name
        stored = home.find("ais", "poison", name)
        assert stored is not None, name
        assert hashlib.md5(stored.read_bytes()).digest() == hashlib.md5(httpd.expected_bytes(path)).digest(), name
    counters_match_rows(conn, job_id)
    assert home.work_files() == []  # o3's work file went with it
    assert home.find("ais", "poison", BAD) is None

    status = home.status(job_id)
    assert (status["state"], status["finished_cnt"], status["error_cnt"]) == ("finished", 9, 1), status
    (shown,) = status["download_errors"]
    assert shown["name"] == BAD and shown["code"] == "worker" and "died 3 times" in shown["error"], shown
    assert status["errors_by_code"] == {"worker": 1}, status

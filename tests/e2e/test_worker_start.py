"""Workers that cannot start: a real ``dlengine run`` whose workers die at
start (a ``sitecustomize`` on their PYTHONPATH: a fresh worker fails at the
import of its module, a forked spare when it begins to work) starts them
again after a growing back-off, gives up after a few deaths in a row, fails
the objects of that mountpath with the reason (the worker's exit and last
lines on stderr) and ends non-zero; a worker killed mid-work, again and
again, is replaced every time and its job completes."""

from __future__ import annotations

import itertools
import os
import signal
import time
from pathlib import Path

from harness.httpd import Fault, TestHTTPServer
from tests.conftest import Home, wait_for, worker_pids

# Appends "<monotonic> <kind> <pid>" to $FAILHOOK_LOG for each worker that
# starts on $FAILHOOK_MOUNTPATH (every mountpath if unset), and makes it die:
# at the import of dlengine.supervisor.worker in a fresh worker (``python -c
# _ENTRY ... MOUNTPATH ...``), in worker_main in a spare (forked by ``run``,
# which imported the module before forking).
_HOOK = """
import importlib.util, os, sys, time

def _doomed(kind, args):
    mountpath = os.environ.get("FAILHOOK_MOUNTPATH")
    if mountpath is not None and mountpath not in args:
        return False
    with open(os.environ["FAILHOOK_LOG"], "a") as log:
        log.write(f"{time.monotonic()} {kind} {os.getpid()}\\n")
    return True

class _Hook:
    def find_spec(self, name, path=None, target=None):
        if name != "dlengine.supervisor.worker":
            return None
        if sys.argv[:1] == ["-c"] and _doomed("fresh", sys.argv):
            raise ModuleNotFoundError("No module named 'pycurl_test_hook' (from http://h/x?X-Amz-Signature=hunter2)")
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        run = spec.loader.exec_module
        def exec_module(module):
            run(module)
            real = module.worker_main
            def worker_main(settings, mountpath_id, mountpath, *args):
                if _doomed("spare", [str(mountpath)]):
                    raise RuntimeError("a setting this worker cannot use (test hook)")
                return real(settings, mountpath_id, mountpath, *args)
            module.worker_main = worker_main
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, _Hook())
"""


def _doom_workers(home: Home, tmp_path: Path, mountpath: Path | None = None) -> Path:
    """Install the hook for ``home``'s processes; returns its log of starts."""
    log = tmp_path / "starts.log"
    home.site_hook(tmp_path / "hook", _HOOK, FAILHOOK_LOG=str(log))
    if mountpath is not None:
        home.env["FAILHOOK_MOUNTPATH"] = str(mountpath)
    return log


def _starts(log: Path) -> list[tuple[float, str]]:
    if not log.exists():
        return []
    return [(float(t), kind) for t, kind, _ in (line.split(" ", 2) for line in log.read_text().splitlines())]


def _objects(httpd: TestHTTPServer, bucket: str, count: int) -> dict[str, str]:
    objects = {}
    for i in range(count):
        httpd.put_generated(f"/{bucket}/o{i}.bin", 1000 + i, seed=i)
        objects[f"o{i}.bin"] = f"{httpd.url}/{bucket}/o{i}.bin"
    return objects


def test_workers_dying_at_start_are_given_up_with_the_reason(home: Home, httpd: TestHTTPServer, tmp_path: Path) -> None:
    log = _doom_workers(home, tmp_path)
    objects = _objects(httpd, "doomed", 3)
    job_id = home.submit({"type": "multi", "bucket": {"name": "doomed"}, "objects": objects})

    began = time.monotonic()
    res = home.run(timeout=90)
    took = time.monotonic() - began

    assert res.returncode == 1, res.stderr
    assert took < 60, took
    starts = _starts(log)
    print(f"run ended after {took:.1f} s; worker starts: {starts}")
    assert [kind for _, kind in starts] == ["spare"] + ["fresh"] * 4  # 5 deaths in a row, no more
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(starts)]
    assert gaps[-1] >= 1.6 and sum(gaps) >= 0.2 + 0.4 + 0.8 + 1.6, gaps  # backed off, not a tight loop
    assert "No module named 'pycurl_test_hook'" in res.stderr and "exit code 1" in res.stderr
    assert "hunter2" not in res.stderr  # what a worker said goes through redact
    assert "died at start 5 times in a row" in res.stderr

    status = home.status(job_id)
    assert status["state"] == "finished" and status["error_cnt"] == 3, status
    assert status["errors_by_code"] == {"worker": 3}
    (error,) = {e["error"] for e in status["download_errors"]}
    assert f"mountpath {home.mountpaths[0]}" in error and "exit code 1" in error, error
    assert "No module named 'pycurl_test_hook'" in error and "hunter2" not in error, error


def test_only_the_objects_of_the_broken_mountpath_fail(home: Home, httpd: TestHTTPServer, tmp_path: Path) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    home.env["DLENGINE_MOUNTPATHS"] = f"{good}{os.pathsep}{bad}"
    log = _doom_workers(home, tmp_path, mountpath=bad)
    objects = _objects(httpd, "half", 24)
    job_id = home.submit({"type": "multi", "bucket": {"name": "half"}, "objects": objects})

    res = home.run(timeout=90)

    assert res.returncode == 1, res.stderr
    assert {kind for _, kind in _starts(log)} == {"spare", "fresh"} and len(_starts(log)) == 5, (
        _starts(log),
        res.stderr,
    )
    conn = home.ledger()
    rows = conn.execute(
        "SELECT m.path, o.state, o.error_code, count(*) FROM objects o JOIN mountpaths m ON m.id = o.mountpath"
        " GROUP BY 1, 2, 3"
    ).fetchall()
    by_path = {(Path(r[0]), r[1], r[2]): r[3] for r in rows}
    assert set(by_path) == {(good, "done", None), (bad, "failed", "worker")}, by_path
    assert home.status(job_id)["finished_cnt"] == by_path[(good, "done", None)]


def test_download_wait_ends_with_the_reason(home: Home, httpd: TestHTTPServer, tmp_path: Path) -> None:
    """``download --wait`` (through a background supervisor) ends too,
    non-zero, saying why."""
    _doom_workers(home, tmp_path)
    home.env["DLENGINE_INLINE"] = "0"
    _objects(httpd, "waited", 2)
    res = home.cli("download", f"{httpd.url}/waited/o{{0..1}}.bin", "ais://waited/", "--wait", timeout=90)
    assert res.returncode != 0, res.stderr
    assert "died at start 5 times in a row" in res.stderr and "pycurl_test_hook" in res.stderr, res.stderr


def test_workers_killed_mid_work_are_always_replaced(home: Home, httpd: TestHTTPServer) -> None:
    """More kill -9s than the early deaths a pool tolerates, each of a
    worker holding rows: every one is replaced and the job completes
    (the object may kill its worker more often than that: fewer than
    DLENGINE_ATTEMPTS times, after which it would fail, test_poison)."""
    path = "/slow/big.bin"
    httpd.put_generated(path, 8_000_000, seed=5)
    httpd.set_fault(path, Fault(rate=2_000_000))
    home.env["DLENGINE_CHUNK"] = str(1 << 20)
    home.env["DLENGINE_ATTEMPTS"] = "10"
    job_id = home.submit({"type": "single", "bucket": {"name": "slow"}, "link": httpd.url + path})
    runner = home.spawn("run")
    for kills in range(7):
        wait_for(lambda k=kills: len([r for r in httpd.requests if r.path == path]) > k, timeout=30)  # downloading
        (victim,) = wait_for(lambda: worker_pids(runner.pid), timeout=30)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda v=victim: v not in worker_pids(runner.pid), timeout=30)
    httpd.clear_faults()
    assert runner.wait(60) == 0, runner.stderr.read() if runner.stderr else ""
    assert home.status(job_id)["finished_cnt"] == 1
    stored = home.find("ais", "slow", "big.bin")
    assert stored is not None and stored.read_bytes() == httpd.expected_bytes(path)

"""A directory of a bucket swapped for a symlink while a worker runs
(issue 13): the worker's next objects under it are refused, nothing is
written or created outside the bucket. The guard itself, component by
component: tests/unit/test_symlink_guard.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.httpd import TestHTTPServer
from tests.conftest import Home, wait_for, worker_pids


def _tree(path: Path) -> list[str]:
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*"))


def _ended(home: Home, job_id: str) -> dict[str, Any] | None:
    status = home.status(job_id)
    return status if status["state"] in ("finished", "aborted") and not status["running_cnt"] else None


def test_swap_while_the_worker_runs(home: Home, httpd: TestHTTPServer, tmp_path: Path) -> None:
    for name in ("first", "second", "deep", "after"):
        httpd.put(f"/s/{name}.bin", name.encode() * 100)
    home.env["DLENGINE_WORKERS"] = "1"  # one worker process serves both jobs
    serve = home.spawn("serve", "--quiet", "--listen", "127.0.0.1:0")
    assert serve.stdout is not None and "serving" in serve.stdout.readline()
    workers: list[list[int]] = []

    def job(objects: dict[str, str]) -> dict[str, Any]:
        links = {name: f"{httpd.url}/s/{link}.bin" for name, link in objects.items()}
        job_id = home.submit({"type": "multi", "bucket": {"name": "b"}, "objects": links})
        status: dict[str, Any] = wait_for(lambda: _ended(home, job_id), timeout=60, interval=0.2)
        workers.append(sorted(worker_pids(serve.pid)))
        return status

    assert job({"a/sub/first.bin": "first"})["error_cnt"] == 0
    bucket = home.find("ais", "b", "a/sub/first.bin")
    assert bucket is not None
    root = bucket.parent.parent.parent
    outside = tmp_path / "outside"
    outside.mkdir()
    os.rename(root / "a", outside / "moved")  # the same directory (inode), now outside
    os.symlink(outside / "moved", root / "a")
    before = _tree(outside)

    status = job({"a/sub/second.bin": "second", "a/new/deep.bin": "deep", "ok/after.bin": "after"})
    assert status["finished_cnt"] == 1 and status["error_cnt"] == 2, status
    assert {e["name"] for e in status["download_errors"]} == {"a/sub/second.bin", "a/new/deep.bin"}
    assert all("symlink" in e["error"] for e in status["download_errors"]), status["download_errors"]
    assert _tree(outside) == before  # not a file, not a directory created out there
    assert (root / "ok" / "after.bin").read_bytes() == b"after" * 100
    assert len(workers[0]) == 1 and workers[0] == workers[1]  # the process that installed into a/ before

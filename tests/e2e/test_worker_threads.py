"""A worker starts its download threads (SDK sources, write-through
buckets, throttled jobs) with the first object that needs them: one whose
objects all go to the libcurl loop starts none (issue 12: 16 threads were
3-6 ms before a worker's first claim). Run in this process as a command
runs a small job (``supervisor.inline``), so the worker can be looked at."""

from __future__ import annotations

from typing import Any

from harness.httpd import TestHTTPServer
from tests.conftest import Home, wait_for


def _run_inline(home: Home, job: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """The job downloaded by a worker of this process: (its status, the worker)."""
    from dlengine.supervisor import inline

    with home._client() as client:
        job_id = client.submit(job, start=False)
        run = inline.start(client.settings, client.ledger, [job_id])
        assert run is not None  # (the control: downloaded here)
        with run:
            wait_for(lambda: client.status(job_id)["state"] not in ("pending", "running"), timeout=60)
        return dict(client.status(job_id)), run._workers[0]


def test_no_download_threads_for_objects_of_the_libcurl_loop(home: Home, httpd: TestHTTPServer) -> None:
    httpd.put("/t/a.bin", b"a" * 5000)
    httpd.put("/t/b.bin", b"b" * 5000)
    job = {"type": "multi", "bucket": {"name": "p"}, "objects": [f"{httpd.url}/t/a.bin", f"{httpd.url}/t/b.bin"]}
    status, worker = _run_inline(home, job)
    assert status["done_cnt"] == 2, status
    assert worker._downloaders == []


def test_a_throttled_job_starts_them(home: Home, httpd: TestHTTPServer) -> None:
    """(The control: objects for the download threads still find them.)"""
    httpd.put("/t/c.bin", b"c" * 5000)
    job = {"type": "single", "bucket": {"name": "t"}, "link": f"{httpd.url}/t/c.bin"}
    status, worker = _run_inline(home, {**job, "limits": {"bytes_per_hour": 1 << 40}})
    assert status["done_cnt"] == 1, status
    assert len(worker._downloaders) == worker.settings.threads_per_worker >= 1
    assert not any(thread.is_alive() for thread in worker._downloaders)  # stopped with the worker

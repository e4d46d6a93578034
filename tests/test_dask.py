"""The Dask executor against a real ``distributed.LocalCluster`` (worker
processes on 127.0.0.1) and moto's S3: the conformance test shared with the
local pools, a Dask worker killed mid-job, the supervisor killed and
restarted, limits across the cluster, and local-disk jobs refused."""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cloud_servers import S3Server
from tests.conftest import Home, counters_match_rows, wait_for
from tests.httpd import Fault, TestHTTPServer

distributed = pytest.importorskip(
    "distributed", reason="dask.distributed is not installed (pip install -e '.[dask]' or '.[test]')"
)

SLOW_GET = Fault(delay=0.15, methods=frozenset({"GET"}))


@pytest.fixture(scope="session")
def dask_cluster(s3_server: S3Server) -> Iterator[Any]:
    """Two worker processes; started after the S3 server so they inherit
    its AWS_* variables (workers elsewhere get them from their own env)."""
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    yield cluster
    cluster.close()


@pytest.fixture
def dask_client(dask_cluster: Any) -> Iterator[Any]:
    client = distributed.Client(dask_cluster, set_as_default=False)
    client.wait_for_workers(2, timeout=60)
    yield client
    client.close()


def _executor(cluster: Any) -> str:
    return "dask://" + str(cluster.scheduler_address).removeprefix("tcp://")


@pytest.fixture
def bucket(s3_server: S3Server, home: Home) -> str:
    home.env.update(s3_server.env)
    name = f"dask-{uuid.uuid4().hex[:10]}"
    s3_server.client().create_bucket(Bucket=name)
    return name


def _range_job(httpd: TestHTTPServer, bucket: str, count: int, size: int = 20_000, **extra: Any) -> dict[str, Any]:
    prefix = f"/{bucket}"
    for i in range(count):
        httpd.put_generated(f"{prefix}/obj-{i:03d}.bin", size + 997 * i, seed=i)
    template = f"{httpd.url}{prefix}/obj-{{000..{count - 1:03d}}}.bin"
    return {"type": "range", "bucket": {"name": bucket, "provider": "s3"}, "template": template, **extra}


def _assert_stored(s3_server: S3Server, httpd: TestHTTPServer, bucket: str, count: int) -> None:
    client = s3_server.client()
    for i in range(count):
        name = f"obj-{i:03d}.bin"
        body = client.get_object(Bucket=bucket, Key=name)["Body"].read()
        assert body == httpd.expected_bytes(f"/{bucket}/{name}"), name


def _done(home: Home, job_id: str) -> int:
    conn = home.ledger()
    try:
        row = conn.execute("SELECT done_cnt FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return int(row[0]) if row else 0
    finally:
        conn.close()


def _finish(home: Home, job_id: str, count: int, *run: str) -> dict[str, Any]:
    res = home.run(*run, timeout=90)
    assert res.returncode == 0, res.stderr[-3000:]
    status = home.status(job_id)
    assert (status["state"], status["done_cnt"], status["error_cnt"]) == ("finished", count, 0), status
    conn = home.ledger()
    try:
        counters_match_rows(conn, job_id)
    finally:
        conn.close()
    return status


@pytest.mark.parametrize("executor", ["local", "dask"])
def test_conformance_range_job_into_s3(
    executor: str, home: Home, bucket: str, httpd: TestHTTPServer, s3_server: S3Server, request: pytest.FixtureRequest
) -> None:
    """The same job, the same per-object function, either executor."""
    if executor == "dask":
        executor = _executor(request.getfixturevalue("dask_cluster"))
    job_id = home.submit(_range_job(httpd, bucket, 12))
    _finish(home, job_id, 12, "--executor", executor)
    _assert_stored(s3_server, httpd, bucket, 12)
    assert home.visible_files() == [] and home.work_files() == []


def test_worker_killed_mid_job(
    home: Home, bucket: str, httpd: TestHTTPServer, s3_server: S3Server, dask_cluster: Any, dask_client: Any
) -> None:
    httpd.set_default_fault(SLOW_GET)
    count = 40
    job_id = home.submit(_range_job(httpd, bucket, count))
    supervisor = home.spawn("run", "--executor", _executor(dask_cluster))
    wait_for(lambda: _done(home, job_id) >= 6, timeout=60)
    pid = next(iter(dask_client.run(os.getpid).values()))
    os.kill(pid, signal.SIGKILL)  # the nanny starts a new one
    _, err = supervisor.communicate(timeout=90)
    assert supervisor.returncode == 0, err[-3000:]
    status = home.status(job_id)
    assert (status["done_cnt"], status["error_cnt"]) == (count, 0), status
    _assert_stored(s3_server, httpd, bucket, count)


def test_supervisor_killed_then_resumed(
    home: Home, bucket: str, httpd: TestHTTPServer, s3_server: S3Server, dask_cluster: Any, dask_client: Any
) -> None:
    httpd.set_default_fault(SLOW_GET)
    count = 40
    job_id = home.submit(_range_job(httpd, bucket, count))
    supervisor = home.spawn("run", "--executor", _executor(dask_cluster))
    wait_for(lambda: _done(home, job_id) >= 8, timeout=60)
    home.kill(supervisor)
    assert _done(home, job_id) < count
    # the orphaned Dask tasks finish and upload; nobody records them
    wait_for(lambda: not dask_client.processing() or not any(dask_client.processing().values()), timeout=30)
    wait_for(lambda: httpd.in_flight == 0, timeout=30)
    _finish(home, job_id, count, "--executor", _executor(dask_cluster))
    _assert_stored(s3_server, httpd, bucket, count)
    for i in range(count):  # what was stored is recognised (HEADs), never fetched twice
        assert httpd.request_count(f"/{bucket}/obj-{i:03d}.bin", method="GET") == 1, i


def test_connection_limit_across_the_cluster(
    home: Home, bucket: str, httpd: TestHTTPServer, s3_server: S3Server, dask_cluster: Any
) -> None:
    httpd.set_default_fault(SLOW_GET)
    job_id = home.submit(_range_job(httpd, bucket, 12, limits={"connections": 2}))
    _finish(home, job_id, 12, "--executor", _executor(dask_cluster))
    assert httpd.peak_concurrency == 2  # the limit, reached: not a pass with no concurrency at all
    _assert_stored(s3_server, httpd, bucket, 12)


def test_bytes_per_hour_across_the_cluster(
    home: Home, bucket: str, httpd: TestHTTPServer, s3_server: S3Server, dask_cluster: Any
) -> None:
    rate = 128 << 10  # bytes per second; 8 objects of ~48 KiB: ~3 s
    job = _range_job(httpd, bucket, 8, size=48 << 10, limits={"bytes_per_hour": rate * 3600})
    job_id = home.submit(job)
    _finish(home, job_id, 8, "--executor", _executor(dask_cluster))
    conn = home.ledger()
    try:  # objects this small sit in socket buffers: time the reads, not the sends
        sql = "SELECT max(end_time) - min(start_time), sum(size) FROM objects o JOIN jobs j ON j.seq = o.job"
        elapsed, total = conn.execute(sql + " WHERE j.id = ?", (job_id,)).fetchone()
    finally:
        conn.close()
    # the bucket starts empty and saves up at most half a second of the rate
    assert (total / rate - 0.5) * 0.9 <= elapsed <= total / rate + 10, (elapsed, total)
    _assert_stored(s3_server, httpd, bucket, 8)


def test_local_disk_jobs_are_refused(home: Home, httpd: TestHTTPServer, dask_cluster: Any) -> None:
    httpd.put("/x.bin", b"x" * 100)
    executor = _executor(dask_cluster)
    job = {"type": "single", "bucket": {"name": "local"}, "link": f"{httpd.url}/x.bin"}
    home.env["DLENGINE_EXECUTOR"] = executor
    refused = home.cli("submit", "-", "--no-start", input=json.dumps(job), timeout=30)
    assert refused.returncode == 2 and "cloud buckets" in refused.stderr, refused.stderr
    home.env.pop("DLENGINE_EXECUTOR")
    job_id = home.submit(job)  # submitted for the local pools, then run on Dask
    res = home.run("--executor", executor, timeout=60)
    assert res.returncode == 1
    status = home.status(job_id)
    assert status["state"] == "aborted" and "cloud buckets" in status["error"], status

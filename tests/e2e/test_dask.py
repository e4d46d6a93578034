"""The Dask executor against a real ``distributed.LocalCluster`` (worker
processes on 127.0.0.1) and SeaweedFS as the S3 store: the conformance test
shared with the local pools, a Dask worker killed mid-job (what it uploaded
is not fetched again), the supervisor killed and restarted, hung workers
(their batches, quiet for a few timeouts, are cancelled and run again), limits across the
cluster, and local-disk jobs refused."""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from dlengine.ledger.ledger import Ledger
from harness.httpd import Fault, TestHTTPServer
from harness.seaweedfs import SeaweedFS
from tests.conftest import Home, counters_match_rows, wait_for

distributed = pytest.importorskip(
    "distributed", reason="dask.distributed is not installed (pip install -e '.[dask]' or '.[test]')"
)

SLOW_GET = Fault(delay=0.15, methods=frozenset({"GET"}))


@pytest.fixture(scope="session")
def dask_cluster(seaweedfs: SeaweedFS) -> Iterator[Any]:
    """Two worker processes whose nannies give them SeaweedFS's AWS_*
    variables (workers elsewhere get them from their own environment);
    this process's environment is left alone. The workers' profiler is off:
    it deadlocks CPython before 3.11.9 / 3.12.3 (docs/scale-out.md)."""
    env = {**seaweedfs.env, "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"}
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None, env=env
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
def bucket(seaweedfs: SeaweedFS, home: Home) -> str:
    home.env.update(seaweedfs.env)
    name = f"dask-{uuid.uuid4().hex[:10]}"
    seaweedfs.client().create_bucket(Bucket=name)
    return name


def _range_job(httpd: TestHTTPServer, bucket: str, count: int, size: int = 20_000, **extra: Any) -> dict[str, Any]:
    prefix = f"/{bucket}"
    for i in range(count):
        httpd.put_generated(f"{prefix}/obj-{i:03d}.bin", size + 997 * i, seed=i)
    template = f"{httpd.url}{prefix}/obj-{{000..{count - 1:03d}}}.bin"
    return {"type": "range", "bucket": {"name": bucket, "provider": "s3"}, "template": template, **extra}


def _assert_stored(store: SeaweedFS, httpd: TestHTTPServer, bucket: str, count: int) -> None:
    client = store.client()
    for i in range(count):
        name = f"obj-{i:03d}.bin"
        body = client.get_object(Bucket=bucket, Key=name)["Body"].read()
        assert body == httpd.expected_bytes(f"/{bucket}/{name}"), name


def _stored(store: SeaweedFS, bucket: str) -> set[str]:
    pages = store.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {str(o["Key"]) for page in pages for o in page.get("Contents", ())}


def _gets(httpd: TestHTTPServer, bucket: str, count: int) -> dict[str, int]:
    names = [f"obj-{i:03d}.bin" for i in range(count)]
    return {n: httpd.request_count(f"/{bucket}/{n}", method="GET") for n in names}


def _pending_errors(home: Home, job_id: str) -> list[str]:
    ledger = Ledger.open(home.path / "ledger.db")
    try:
        rows = ledger.objects(ledger.job(job_id).seq, ["pending"], 1000)
    finally:
        ledger.close()
    return [row.error or "" for row in rows]


def _errors(home: Home, job_id: str) -> list[str]:
    """The errors recorded on the job's rows still to do (a row given back
    keeps its error when it is claimed again)."""
    ledger = Ledger.open(home.path / "ledger.db")
    try:
        rows = ledger.objects(ledger.job(job_id).seq, ["pending", "running"], 1000)
    finally:
        ledger.close()
    return [row.error or "" for row in rows]


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
    executor: str, home: Home, bucket: str, httpd: TestHTTPServer, seaweedfs: SeaweedFS, request: pytest.FixtureRequest
) -> None:
    """The same job, the same per-object function, either executor."""
    if executor == "dask":
        executor = _executor(request.getfixturevalue("dask_cluster"))
    job_id = home.submit(_range_job(httpd, bucket, 12))
    _finish(home, job_id, 12, "--executor", executor)
    _assert_stored(seaweedfs, httpd, bucket, 12)
    assert home.visible_files() == [] and home.work_files() == []


def test_worker_killed_mid_job(
    home: Home, bucket: str, httpd: TestHTTPServer, seaweedfs: SeaweedFS, dask_cluster: Any, dask_client: Any
) -> None:
    """The scheduler runs the dead worker's batch again elsewhere; that run
    knows it is one (the batch's start mark) and checks the store first:
    what the dead worker uploaded is not fetched again."""
    httpd.set_default_fault(SLOW_GET)
    count = 40
    job_id = home.submit(_range_job(httpd, bucket, count))
    supervisor = home.spawn("run", "--executor", _executor(dask_cluster))
    wait_for(lambda: len(_stored(seaweedfs, bucket)) >= 6, timeout=60, interval=0.02)
    busy = [addr for addr, keys in dask_client.processing().items() if keys]
    pid = dask_client.run(os.getpid, workers=busy[:1])[busy[0]]
    os.kill(pid, signal.SIGKILL)  # the nanny starts a new one
    uploaded = _stored(seaweedfs, bucket)  # by the dead worker (and PUTs it had in flight)
    _, err = supervisor.communicate(timeout=90)
    assert supervisor.returncode == 0, err[-3000:]
    status = home.status(job_id)
    assert (status["done_cnt"], status["error_cnt"]) == (count, 0), status
    _assert_stored(seaweedfs, httpd, bucket, count)
    gets = _gets(httpd, bucket, count)
    twice = sorted(n for n in gets if gets[n] > 1)
    # fetched again: only what the dead worker's threads had in flight (its
    # PUTs cut off by the kill), never the >= 6 objects it had stored before
    assert len(uploaded) >= 6 and len(twice) <= int(home.env["DLENGINE_THREADS"]), (len(uploaded), twice)
    assert all(gets[n] <= 2 for n in gets), gets


def test_supervisor_killed_then_resumed(
    home: Home, bucket: str, httpd: TestHTTPServer, seaweedfs: SeaweedFS, dask_cluster: Any, dask_client: Any
) -> None:
    httpd.set_default_fault(SLOW_GET)
    count = 40
    job_id = home.submit(_range_job(httpd, bucket, count))
    supervisor = home.spawn("run", "--executor", _executor(dask_cluster))
    wait_for(lambda: len(_stored(seaweedfs, bucket)) >= 8, timeout=60, interval=0.02)
    home.kill(supervisor)
    assert home.status(job_id)["done_cnt"] < count
    # the orphaned Dask tasks finish and upload; nobody records them
    wait_for(lambda: not dask_client.processing() or not any(dask_client.processing().values()), timeout=30)
    wait_for(lambda: httpd.in_flight == 0, timeout=30)
    _finish(home, job_id, count, "--executor", _executor(dask_cluster))
    _assert_stored(seaweedfs, httpd, bucket, count)
    for i in range(count):  # what was stored is recognised (HEADs), never fetched twice
        assert httpd.request_count(f"/{bucket}/obj-{i:03d}.bin", method="GET") == 1, i


def test_hung_workers_batches_are_cancelled_and_run_again(
    home: Home, bucket: str, httpd: TestHTTPServer, seaweedfs: SeaweedFS, dask_cluster: Any, dask_client: Any
) -> None:
    """Both workers stopped (SIGSTOP: alive to the scheduler, doing
    nothing): the batch, quiet for its limit (2 s + 3 x the 1 s timeout),
    is cancelled and its rows go back to pending with the attempt counted;
    once the workers run again, the job finishes."""
    count = 4
    job_id = home.submit(_range_job(httpd, bucket, count, timeout="1s"))
    pids = list(dask_client.run(os.getpid).values())
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        supervisor = home.spawn("run", "--executor", _executor(dask_cluster))
        wait_for(lambda: any("no progress" in e for e in _pending_errors(home, job_id)), timeout=60, interval=0.2)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    _, err = supervisor.communicate(timeout=90)
    assert supervisor.returncode == 0, err[-3000:]
    assert "made no progress" in err
    status = home.status(job_id)
    assert (status["state"], status["done_cnt"], status["error_cnt"]) == ("finished", count, 0), status
    _assert_stored(seaweedfs, httpd, bucket, count)


def test_concurrency_follows_the_workers_threads(
    home: Home, bucket: str, httpd: TestHTTPServer, seaweedfs: SeaweedFS
) -> None:
    """One Dask worker process with 3 threads and DLENGINE_THREADS=1: 3
    batches at once, each with its one object in flight, so 3 downloads
    at once (one shared pool per process held it at 1), every object
    fetched by the process's libcurl loop."""
    from dlengine.supervisor import dask_curl

    env = {**seaweedfs.env, "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"}
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=3, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0", env=env
    )
    try:
        httpd.set_default_fault(SLOW_GET)
        home.env["DLENGINE_THREADS"] = "1"
        job_id = home.submit(_range_job(httpd, bucket, 9))
        _finish(home, job_id, 9, "--executor", _executor(cluster))
        assert httpd.peak_concurrency == 3
        with distributed.Client(cluster, set_as_default=False) as client:
            assert sum(client.run(dask_curl.transfers).values()) == 9
    finally:
        cluster.close()
    _assert_stored(seaweedfs, httpd, bucket, 9)


def test_connection_limit_across_the_cluster(
    home: Home, bucket: str, httpd: TestHTTPServer, seaweedfs: SeaweedFS, dask_cluster: Any
) -> None:
    httpd.set_default_fault(SLOW_GET)
    job_id = home.submit(_range_job(httpd, bucket, 12, limits={"connections": 2}))
    _finish(home, job_id, 12, "--executor", _executor(dask_cluster))
    assert httpd.peak_concurrency == 2  # the limit, reached: not a pass with no concurrency at all
    _assert_stored(seaweedfs, httpd, bucket, 12)


def test_bytes_per_hour_across_the_cluster(
    home: Home, bucket: str, httpd: TestHTTPServer, seaweedfs: SeaweedFS, dask_cluster: Any
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
    _assert_stored(seaweedfs, httpd, bucket, 8)


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


def test_a_hung_workers_large_batch_goes_after_a_few_timeouts_not_its_size(
    home: Home, bucket: str, httpd: TestHTTPServer, seaweedfs: SeaweedFS, dask_cluster: Any, dask_client: Any
) -> None:
    """One worker stopped (SIGSTOP) while it runs a batch of 30 rows, one
    download at a time: the batch is cancelled once quiet for 2 s + 3 x
    the 1 s timeout, its rows back to pending with the attempt counted;
    the size-based deadline it replaced gave this batch
    2 x (2 + 30 x 2 x 1) = 124 s, past this test's wait. Once the worker
    runs again the job finishes, every object stored."""
    count = 60
    httpd.set_default_fault(Fault(delay=0.2, methods=frozenset({"GET"})))
    home.env["DLENGINE_THREADS"] = "1"  # 60 rows over 2 Dask threads: batches of 30, one download at a time
    job_id = home.submit(_range_job(httpd, bucket, count, size=2000, timeout="1s"))
    supervisor = home.spawn("run", "--executor", _executor(dask_cluster))
    # a batch's download under way (outcomes reach the ledger only when a whole batch ends)
    wait_for(lambda: httpd.in_flight > 0 and any(dask_client.processing().values()), timeout=60, interval=0.05)
    busy = next(w for w, keys in dask_client.processing().items() if keys)
    pid = dask_client.run(os.getpid, workers=[busy])[busy]
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(lambda: any("no progress" in e for e in _errors(home, job_id)), timeout=60, interval=0.2)
    finally:
        os.kill(pid, signal.SIGCONT)
    _, err = supervisor.communicate(timeout=90)
    assert supervisor.returncode == 0, err[-3000:]
    assert "made no progress" in err, err[-3000:]
    status = home.status(job_id)
    assert (status["state"], status["done_cnt"], status["error_cnt"]) == ("finished", count, 0), status
    _assert_stored(seaweedfs, httpd, bucket, count)

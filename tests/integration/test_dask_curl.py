"""A Dask batch's objects through the worker process's libcurl loop
(``dlengine/supervisor/dask_curl.py``), called in this process as a Dask
worker calls it: real HTTP source (harness/httpd.py), SeaweedFS as the store.
The cluster-level tests (concurrency per Dask thread) are in test_dask.py."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

from dlengine.ledger.models import Outcome, Task
from dlengine.ledger.states import ObjectState
from dlengine.supervisor import dask_curl, work
from dlengine.supervisor.dask_executor import run_batch
from harness.httpd import Fault, TestHTTPServer
from harness.seaweedfs import SeaweedFS


@pytest.fixture
def bucket(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in seaweedfs.env.items():
        monkeypatch.setenv(name, value)
    name = f"curl-{uuid.uuid4().hex[:10]}"
    seaweedfs.client().create_bucket(Bucket=name)
    return name


def _tasks(httpd: TestHTTPServer, bucket: str, count: int, first_id: int = 1, **extra: object) -> list[Task]:
    tasks = []
    for i in range(count):
        path = f"/{bucket}/dir/obj-{i}.bin"
        httpd.put_generated(path, 5_000 + 1_000 * i, seed=i + first_id)
        task = Task(first_id + i, "dnl-x", 1, f"dir/obj-{i}.bin", httpd.url + path, 1, 1, "aws", "", bucket, 10.0, 0)
        tasks.append(task)
    return [Task(**{**t.__dict__, **extra}) for t in tasks]  # type: ignore[arg-type]


def _ctx(tmp_path: Path, threads: int = 4) -> work.Context:
    return work.Context(workdir=tmp_path, headers={}, timeout=10.0, fsync=False, max_attempts=3, pool_size=threads)


def _stored(store: SeaweedFS, httpd: TestHTTPServer, bucket: str, tasks: list[Task]) -> None:
    client = store.client()
    for task in tasks:
        body = client.get_object(Bucket=bucket, Key=task.name)["Body"].read()
        assert body == httpd.expected_bytes(f"/{bucket}/{task.name}"), task.name


def test_objects_go_through_the_loop_and_are_uploaded(
    httpd: TestHTTPServer, seaweedfs: SeaweedFS, bucket: str, tmp_path: Path
) -> None:
    tasks = _tasks(httpd, bucket, 10)
    before = dask_curl.transfers()
    outcomes = run_batch(tasks, _ctx(tmp_path))
    assert [(o.task_id, o.state, o.mountpath) for o in outcomes] == [
        (t.id, ObjectState.DONE, f"s3://{bucket}") for t in tasks
    ]
    assert dask_curl.transfers() - before == 10  # the loop fetched every one
    assert [o.size for o in outcomes] == [5_000 + 1_000 * i for i in range(10)]
    _stored(seaweedfs, httpd, bucket, tasks)
    # with the origin metadata a later attempt recognises it by
    head = seaweedfs.client().head_object(Bucket=bucket, Key=tasks[0].name)
    assert head["Metadata"]["dlengine-size"] == "5000"


def test_a_row_handed_out_before_and_stored_is_not_fetched_again(
    httpd: TestHTTPServer, seaweedfs: SeaweedFS, bucket: str, tmp_path: Path
) -> None:
    tasks = _tasks(httpd, bucket, 5)
    assert all(o.state is ObjectState.DONE for o in run_batch(tasks[:4], _ctx(tmp_path)))
    gets = httpd.request_count(method="GET")
    # the last one the store does not hold yet: checked, then fetched by the loop
    again = [Task(**{**t.__dict__, "attempts": 2}) for t in tasks]  # type: ignore[arg-type]
    before = dask_curl.transfers()
    outcomes = run_batch(again, _ctx(tmp_path))
    assert [o.state for o in outcomes] == [ObjectState.DONE] * 5
    assert httpd.request_count(method="GET") - gets == 1 and dask_curl.transfers() - before == 1
    _stored(seaweedfs, httpd, bucket, again)


def test_failures_come_back_under_the_rows_own_ids(httpd: TestHTTPServer, bucket: str, tmp_path: Path) -> None:
    tasks = _tasks(httpd, bucket, 3, first_id=70)
    httpd.set_fault(f"/{bucket}/{tasks[1].name}", Fault(status=404))
    httpd.set_fault(f"/{bucket}/{tasks[2].name}", Fault(status=503))
    outcomes = {o.task_id: o for o in run_batch(tasks, _ctx(tmp_path))}
    assert sorted(outcomes) == [70, 71, 72]
    assert outcomes[70].state is ObjectState.DONE
    assert outcomes[71].state is ObjectState.FAILED and "404" in (outcomes[71].error or "")
    assert outcomes[72].state is ObjectState.PENDING and outcomes[72].next_try > 0  # transient: retried later


def test_batches_of_two_supervisors_with_the_same_row_ids(
    httpd: TestHTTPServer, seaweedfs: SeaweedFS, bucket: str, tmp_path: Path
) -> None:
    """Rows of different ledgers share ids; each outcome reaches its own batch."""
    other = f"{bucket}-b"
    seaweedfs.client().create_bucket(Bucket=other)
    first, second = _tasks(httpd, bucket, 6), _tasks(httpd, other, 6)
    got: dict[str, list[Outcome]] = {}

    def batch(name: str, tasks: list[Task]) -> None:
        got[name] = run_batch(tasks, _ctx(tmp_path / name, threads=3))

    threads = [threading.Thread(target=batch, args=a) for a in (("a", first), ("b", second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for name, tasks, where in (("a", first, bucket), ("b", second, other)):
        assert [(o.task_id, o.state, o.mountpath) for o in got[name]] == [
            (t.id, ObjectState.DONE, f"s3://{where}") for t in tasks
        ]
        assert [o.etag for o in got[name]] == [httpd.etag(f"/{where}/{t.name}") for t in tasks]
        _stored(seaweedfs, httpd, where, tasks)


def test_batch_keeps_its_threads_worth_in_flight(httpd: TestHTTPServer, bucket: str, tmp_path: Path) -> None:
    httpd.set_default_fault(Fault(delay=0.2, methods=frozenset({"GET"})))
    tasks = _tasks(httpd, bucket, 9)
    assert all(o.state is ObjectState.DONE for o in run_batch(tasks, _ctx(tmp_path, threads=3)))
    assert httpd.peak_concurrency == 3


def test_small_objects_are_uploaded_from_memory_larger_ones_from_a_file(
    httpd: TestHTTPServer, seaweedfs: SeaweedFS, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Objects of at most one chunk go from the loop to the store in
    memory: no scratch file is written for them (``_write_whole`` and the
    install would fail the object here); larger ones through the file."""
    from dlengine import transfer

    installed: list[str] = []
    real_install = transfer._install

    def install(part: str, dest: str, bucket_root: str, fsync: bool = False) -> None:
        installed.append(dest)
        real_install(part, dest, bucket_root, fsync)

    monkeypatch.setattr(transfer, "_write_whole", lambda *_a: pytest.fail("a small object was written to a file"))
    monkeypatch.setattr(transfer, "_install", install)
    tasks = _tasks(httpd, bucket, 6)  # 5,000 .. 10,000 bytes
    ctx = work.Context(workdir=tmp_path, headers={}, timeout=10.0, fsync=False, max_attempts=3, chunk_size=7_500)
    outcomes = run_batch(tasks, ctx)
    assert [(o.task_id, o.state) for o in outcomes] == [(t.id, ObjectState.DONE) for t in tasks]
    assert len(installed) == 3  # 8,000, 9,000 and 10,000 bytes: more than a chunk
    _stored(seaweedfs, httpd, bucket, tasks)


def test_small_uploads_go_through_the_put_loop_and_its_refusals_come_back_per_row(
    httpd: TestHTTPServer, seaweedfs: SeaweedFS, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes held in memory are sent by the process's presigned PUT loop
    (``s3_put.PutLoop``), not by a thread blocked on each (``CloudBucket.put``
    fails the object here); a store's refusal comes back as the row's own
    failure: a wrong secret is permanent."""
    from dlengine.storage import remote

    monkeypatch.setattr(remote.CloudBucket, "put", lambda *_a, **_k: pytest.fail("uploaded on a thread"))
    tasks = _tasks(httpd, bucket, 8)
    outcomes = run_batch(tasks, _ctx(tmp_path))
    assert [(o.task_id, o.state, o.mountpath) for o in outcomes] == [
        (t.id, ObjectState.DONE, f"s3://{bucket}") for t in tasks
    ]
    _stored(seaweedfs, httpd, bucket, tasks)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")  # another chain: another presigner
    failed = run_batch(_tasks(httpd, bucket, 3, first_id=100), _ctx(tmp_path))
    assert [(o.task_id, o.state) for o in failed] == [(100 + i, ObjectState.FAILED) for i in range(3)], failed
    assert all("SignatureDoesNotMatch" in (o.error or "") for o in failed), failed  # denied: not retried

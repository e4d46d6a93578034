"""Objects whose checksum is computed on a thread (ranged segments, large
streams) end on a thread too: the libcurl loop reports their outcome when
the hash, the verify and the install are done, without waiting for them.
In process, one CurlLoop against the test server."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dlengine import errors, transfer
from dlengine.ledger.models import Task
from dlengine.ledger.states import ObjectState
from dlengine.storage import layout
from dlengine.supervisor import work
from harness.httpd import Fault, TestHTTPServer
from tests.curl_driver import LoopDriver

SIZE = 9 << 20  # (more than HASH_ON_THREAD: a stream of it is hashed on a thread)


@pytest.fixture
def server() -> Iterator[TestHTTPServer]:
    with TestHTTPServer(content_md5=True) as httpd:
        yield httpd


@pytest.mark.parametrize("threshold", [1 << 20, 1 << 40], ids=["segments", "stream"])
def test_an_object_hashed_on_a_thread_is_verified_and_installed(
    tmp_path: Path, server: TestHTTPServer, threshold: int
) -> None:
    server.put_generated("/big.bin", SIZE, seed=3)
    loop = LoopDriver(threshold)
    try:
        outcome, dest = loop.get(tmp_path, server.url + "/big.bin")
    finally:
        loop.stop()
    expected = server.expected_bytes("/big.bin")
    assert outcome.state is ObjectState.DONE, outcome
    assert outcome.checksum == "md5:" + hashlib.md5(expected).hexdigest()
    assert Path(dest).read_bytes() == expected
    ranged = [r for r in server.requests if "Range" in r.headers]
    assert (len(ranged) > 0) == (threshold == 1 << 20)


@pytest.mark.parametrize("threshold", [1 << 20, 1 << 40], ids=["segments", "stream"])
def test_a_wrong_checksum_still_fails_the_object(tmp_path: Path, server: TestHTTPServer, threshold: int) -> None:
    server.put_generated("/bad.bin", SIZE, seed=4)
    server.set_fault("/bad.bin", Fault(wrong_md5=True))
    loop = LoopDriver(threshold)
    try:
        outcome, dest = loop.get(tmp_path, server.url + "/bad.bin")
    finally:
        loop.stop()
    assert outcome.state is ObjectState.FAILED and outcome.code is errors.ErrorCode.CHECKSUM, outcome
    assert dest is None
    assert not layout.object_path(tmp_path, "ais", "", "bkt", "o1.bin").exists()
    part, meta = layout.work_paths(tmp_path, 1)
    assert not part.exists() and not meta.exists()


def test_a_stopping_loop_reports_the_ends_still_running(
    tmp_path: Path, server: TestHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped while an object is being verified on its thread: the loop
    waits for it and reports it (installed objects are not left for a
    resume to find), and meanwhile it went on with the others."""
    slow = threading.Event()
    result = transfer._InOrder.result

    def late(self: transfer._InOrder) -> transfer.Hasher:
        slow.set()
        time.sleep(1.0)
        return result(self)

    monkeypatch.setattr(transfer._InOrder, "result", late)
    server.put_generated("/big.bin", SIZE, seed=5)
    server.put("/small.bin", b"s" * 1000)
    loop = LoopDriver(1 << 20)
    try:
        task = Task(1, "j", 1, "o1.bin", server.url + "/big.bin", 1, 1, "ais", "", "bkt", 10.0, 0)
        loop.loop.submit(task, work.Context(workdir=tmp_path, headers={}, fsync=False))
        assert slow.wait(30)
        small, _ = loop.get(tmp_path, server.url + "/small.bin", row=2)  # while the large one ends
        assert small.state is ObjectState.DONE and small.task_id == 2
    finally:
        loop.stop()
    big, dest = loop.results.get(timeout=1)
    assert big.state is ObjectState.DONE and big.task_id == 1
    assert Path(dest).read_bytes() == server.expected_bytes("/big.bin")

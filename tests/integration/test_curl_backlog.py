"""A libcurl loop with ``connections`` keeps at most that many objects in
flight; the others wait in its backlog and start as transfers end, not
when the worker's next claim comes. Waiting objects are aborted like the
others, and a server that turns an object away (429, 503) brings the loop
down to ``fewest`` connections. In process, one CurlLoop against the test
server, requests held in flight by the server until the test lets them go."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dlengine.ledger.states import ObjectState
from harness.httpd import Fault, TestHTTPServer
from tests.curl_driver import LoopDriver


@pytest.fixture
def server() -> Iterator[TestHTTPServer]:
    with TestHTTPServer() as httpd:
        yield httpd


def _objects(server: TestHTTPServer, count: int) -> list[str]:
    for i in range(count):
        server.put(f"/b/o{i}.bin", bytes([i]) * (1000 + i))
    return [f"{server.url}/b/o{i}.bin" for i in range(count)]


@contextlib.contextmanager
def _held(
    tmp_path: Path, server: TestHTTPServer, count: int, connections: int = 0, submitted: int | None = None
) -> Iterator[tuple[LoopDriver, threading.Event, list[str]]]:
    """A loop of ``connections`` with ``count`` objects on the server, the
    first ``submitted`` of them (all: None) submitted, every request held
    by the server until the gate is set."""
    links = _objects(server, count)
    gate = threading.Event()
    server.set_default_fault(Fault(hold=gate))
    loop = LoopDriver(connections=connections)
    try:
        for row, link in enumerate(links[:submitted], 1):
            loop.submit(tmp_path, link, row)
        yield loop, gate, links
    finally:
        gate.set()
        loop.stop()


def _outcomes(loop: LoopDriver, count: int) -> dict[int, tuple[object, str | None]]:
    got = {}
    for _ in range(count):
        outcome, dest = loop.results.get(timeout=30)
        got[outcome.task_id] = (outcome, dest)
    return got


def test_objects_beyond_the_connections_wait_and_all_come(tmp_path: Path, server: TestHTTPServer) -> None:
    with _held(tmp_path, server, 8, connections=3) as (loop, gate, _):
        assert server.wait_in_flight(3, timeout=10)
        time.sleep(0.3)  # (time for a fourth to start, if the loop let it)
        assert server.in_flight == 3
        gate.set()
        got = _outcomes(loop, 8)
    assert sorted(got) == list(range(1, 9))
    for row, (outcome, dest) in got.items():
        assert outcome.state is ObjectState.DONE, outcome  # type: ignore[attr-defined]
        assert dest is not None and Path(dest).read_bytes() == bytes([row - 1]) * (999 + row)
    assert server.peak_concurrency == 3
    assert server.request_count() == 8
    assert loop.loop._objects == {}  # (every handle released, each object's count with it)


def test_without_a_limit_every_object_is_in_flight(tmp_path: Path, server: TestHTTPServer) -> None:
    """(The control: the test server holds 8 requests at once.)"""
    with _held(tmp_path, server, 8) as (loop, gate, _):
        assert server.wait_in_flight(8, timeout=10)
        gate.set()
        got = _outcomes(loop, 8)
    assert all(outcome.state is ObjectState.DONE for outcome, _ in got.values())  # type: ignore[attr-defined]


def test_an_object_aborted_while_it_waits_is_reported_at_once(tmp_path: Path, server: TestHTTPServer) -> None:
    with _held(tmp_path, server, 3, connections=1, submitted=2) as (loop, gate, links):
        waiting = loop.submit(tmp_path, links[2], 3)
        assert server.wait_in_flight(1, timeout=10)
        assert waiting.cancel is not None
        waiting.cancel.set()
        outcome, dest = loop.results.get(timeout=10)  # (while the first is still held)
        assert (outcome.task_id, outcome.state, dest) == (3, ObjectState.ABORTED, None)
        assert server.in_flight == 1
        gate.set()
        got = _outcomes(loop, 2)
    assert sorted(got) == [1, 2]
    assert server.request_count() == 2  # the aborted one was never asked for


def test_stopping_reports_the_waiting_objects_aborted(tmp_path: Path, server: TestHTTPServer) -> None:
    with _held(tmp_path, server, 4, connections=1) as (loop, _, _):
        assert server.wait_in_flight(1, timeout=10)
        loop.loop.stop()
        got = _outcomes(loop, 4)
    assert {row: outcome.state for row, (outcome, _) in got.items()} == dict.fromkeys(  # type: ignore[attr-defined]
        range(1, 5), ObjectState.ABORTED
    )


@pytest.mark.parametrize(("status", "fewer"), [(503, True), (429, True), (404, False)])
def test_a_server_turning_an_object_away_gets_fewer_connections(
    tmp_path: Path, server: TestHTTPServer, status: int, fewer: bool
) -> None:
    links = _objects(server, 2)
    server.set_fault("/b/o0.bin", Fault(status=status, times=1))
    loop = LoopDriver(connections=8, fewest=2)
    try:
        outcome, _ = loop.get(tmp_path, links[0])
        assert outcome.state in (ObjectState.PENDING, ObjectState.FAILED), outcome
        assert loop.loop.connections == (2 if fewer else 8)
        outcome, _ = loop.get(tmp_path, links[1], row=2)  # (and the loop goes on)
        assert outcome.state is ObjectState.DONE, outcome
    finally:
        loop.stop()

"""New connections of a libcurl loop open ``curl.CONNECTING`` at a time: a
simple server's listen queue is that deep, and connections opened faster
than it accepts them are lost in it (a SYN dropped, waited for 1, 2, 4...
seconds). On connections the server keeps open the loop grows past that,
one connection an answer; a server that closes each connection gets
CONNECTING objects in flight. A request lost in a full listen queue (its
connection not established while later requests are answered) is asked
again; a server that took a request and is slow to answer it is not.

A server that takes no more than a few connections from a client and
resets the others while it answers its own (a proxy's maxconn) is not a
server that nothing listens on: the loop keeps to the connections it has
there and every object comes.

In process, one CurlLoop against real servers on 127.0.0.1: the test
server (HTTP/1.1, keep-alive), Python's own ``http.server`` (HTTP/1.0,
one connection a request), a bare listening socket whose queue is full
and a proxy that resets connections beyond a cap."""

from __future__ import annotations

import contextlib
import functools
import http.server
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dlengine.engine import curl
from dlengine.ledger.states import ObjectState
from harness.httpd import Fault, TestHTTPServer
from tests.curl_driver import LoopDriver


@pytest.fixture
def server() -> Iterator[TestHTTPServer]:
    with TestHTTPServer() as httpd:
        yield httpd


def _objects(server: TestHTTPServer, count: int, first: int = 0) -> list[str]:
    for i in range(first, first + count):
        server.put(f"/b/o{i}.bin", bytes([i % 256]) * (1000 + i))
    return [f"{server.url}/b/o{i}.bin" for i in range(first, first + count)]


def _all_done(loop: LoopDriver, count: int) -> dict[int, Any]:
    got = {}
    for _ in range(count):
        outcome, dest = loop.results.get(timeout=30)
        assert outcome.state is ObjectState.DONE, outcome
        got[outcome.task_id] = dest
    return got


def test_new_connections_open_a_few_at_a_time(tmp_path: Path, server: TestHTTPServer) -> None:
    links = _objects(server, 16)
    gate = threading.Event()
    server.set_default_fault(Fault(hold=gate))
    loop = LoopDriver(connections=16)
    try:
        for row, link in enumerate(links, 1):
            loop.submit(tmp_path, link, row)
        assert server.wait_in_flight(curl.CONNECTING, timeout=10)
        time.sleep(0.3)  # (time for more to connect, if the loop let them)
        assert server.in_flight == curl.CONNECTING
        gate.set()
        got = _all_done(loop, 16)
    finally:
        gate.set()
        loop.stop()
    assert sorted(got) == list(range(1, 17))
    assert server.request_count() == 16


def test_free_connections_to_one_server_open_none_to_another(tmp_path: Path, server: TestHTTPServer) -> None:
    """Connections a first server keeps free do not let the loop open more
    than a few at once to a second one (a redirect to a CDN, a job of links
    on two hosts)."""
    first = _objects(server, 8)
    loop = LoopDriver(connections=16)
    with TestHTTPServer() as other:
        second = _objects(other, 16, first=100)
        gate = threading.Event()
        other.set_default_fault(Fault(hold=gate))
        try:
            for row, link in enumerate(first, 1):
                loop.submit(tmp_path, link, row)
            _all_done(loop, 8)  # (the first server's connections now free in the loop)
            for row, link in enumerate(second, 101):
                loop.submit(tmp_path, link, row)
            assert other.wait_in_flight(curl.CONNECTING, timeout=10)
            time.sleep(0.3)
            assert other.in_flight == curl.CONNECTING
            gate.set()
            _all_done(loop, 16)
        finally:
            gate.set()
            loop.stop()


def test_connections_kept_open_grow_past_the_few(tmp_path: Path, server: TestHTTPServer) -> None:
    """(The control: one more connection an answer, up to the loop's 16.)"""
    links = _objects(server, 64)
    server.set_default_fault(Fault(delay=0.05))
    loop = LoopDriver(connections=16)
    try:
        for row, link in enumerate(links, 1):
            loop.submit(tmp_path, link, row)
        _all_done(loop, 64)
    finally:
        loop.stop()
    assert curl.CONNECTING < server.peak_concurrency <= 16
    assert len({record.connection for record in server.requests}) <= 16


class _Closing(http.server.SimpleHTTPRequestHandler):
    """Python's file server (HTTP/1.0: a connection a request), each answer
    a little slow, counting the requests waiting for theirs at once."""

    lock = threading.Lock()
    now = peak = 0

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        cls = type(self)
        with cls.lock:
            cls.now += 1
            cls.peak = max(cls.peak, cls.now)
        time.sleep(0.1)  # (long enough for all the loop lets in at once to come, on a busy box)
        with cls.lock:  # (before the answer: a request answered makes room for the next one)
            cls.now -= 1
        super().do_GET()


def test_a_server_closing_each_connection_gets_a_few_objects_at_once(tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    for i in range(30):
        (root / f"f{i}").write_bytes(bytes([i]) * 5000)
    handler = type("Handler", (_Closing,), {"now": 0, "peak": 0, "lock": threading.Lock()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    loop = LoopDriver(connections=16)
    try:
        for i in range(30):
            loop.submit(tmp_path, f"http://127.0.0.1:{httpd.server_address[1]}/f{i}", i + 1)
        got = _all_done(loop, 30)
    finally:
        loop.stop()
        httpd.shutdown()
        httpd.server_close()
    assert all(Path(got[i + 1]).read_bytes() == bytes([i]) * 5000 for i in range(30))
    assert handler.peak == curl.CONNECTING


def _serve_once_freed(listener: socket.socket, filler: socket.socket, after: float, body: bytes) -> None:
    """After ``after`` s, accept the filler (the queue has room again) and
    answer every connection that comes with ``body``."""
    time.sleep(after)
    listener.accept()[0].close()
    filler.close()
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))


def test_a_request_lost_in_a_full_listen_queue_is_asked_again(tmp_path: Path, server: TestHTTPServer) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # (a queue of one, filled: the next SYN is dropped, sent again 1 s later, then 3 s)
    filler = socket.create_connection(listener.getsockname())
    body = b"lost and found" * 100
    threading.Thread(target=_serve_once_freed, args=(listener, filler, 1.5, body), daemon=True).start()
    others = _objects(server, 12)
    server.set_default_fault(Fault(delay=0.05))
    loop = LoopDriver(connections=8)
    try:
        loop.submit(tmp_path, f"http://127.0.0.1:{listener.getsockname()[1]}/lost", 100)
        time.sleep(0.1)  # (its SYN dropped before the others are asked)
        for row, link in enumerate(others, 1):
            loop.submit(tmp_path, link, row)
        got = _all_done(loop, 13)
    finally:
        loop.stop()
        listener.close()
    assert Path(got[100]).read_bytes() == body
    assert loop.loop.reasked >= 1


def test_a_slow_server_that_took_the_request_is_not_asked_again(tmp_path: Path, server: TestHTTPServer) -> None:
    """(The control: the same wait, but the server has the request.)"""
    links = _objects(server, 12)
    server.set_fault("/b/o0.bin", Fault(delay=2.0, times=1))
    loop = LoopDriver(connections=8)
    try:
        loop.submit(tmp_path, links[0], 1)
        time.sleep(0.1)
        for row, link in enumerate(links[1:], 2):
            loop.submit(tmp_path, link, row)
        _all_done(loop, 12)
    finally:
        loop.stop()
    assert server.request_count("/b/o0.bin") == 1
    assert loop.loop.reasked == 0


class _CappedProxy:
    """A TCP proxy in front of ``target`` taking ``cap`` connections at
    once; one more is accepted and reset at once (RST), as a proxy's
    maxconn or a firewall's per-client limit does."""

    def __init__(self, target: tuple[str, int], cap: int) -> None:
        self.target, self.cap = target, cap
        self.lock = threading.Lock()
        self.live = self.reset = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                taken = self.live < self.cap
                self.live += taken
                self.reset += not taken
            if not taken:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, socket.create_connection(self.target) as up:
            pump = threading.Thread(target=_pump, args=(up, conn), daemon=True)
            pump.start()
            _pump(conn, up)
            pump.join(10)
        with self.lock:
            self.live -= 1

    def close(self) -> None:
        self.listener.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


@pytest.mark.parametrize("connections", [16, 0])  # (0: no limit, every object submitted in flight, as Dask's loops)
def test_a_server_that_resets_connections_beyond_its_cap_gets_every_object(
    tmp_path: Path, server: TestHTTPServer, connections: int
) -> None:
    _objects(server, 40)
    server.set_default_fault(Fault(delay=0.02))
    proxy = _CappedProxy(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), cap=3)
    loop = LoopDriver(connections=connections)
    try:
        for row in range(1, 41):
            loop.submit(tmp_path, f"{proxy.url}/b/o{row - 1}.bin", row)
        got = _all_done(loop, 40)
    finally:
        loop.stop()
        proxy.close()
    assert all(Path(got[row]).read_bytes() == bytes([row - 1]) * (999 + row) for row in got)
    assert proxy.reset > 0  # (the loop did open one more than the cap)
    assert list(loop.loop._caps) == [proxy.url] and 0 < loop.loop._caps[proxy.url] <= 3


def test_where_nothing_listens_a_refusal_still_fails_at_once(tmp_path: Path, server: TestHTTPServer) -> None:
    """(The control: every connection refused is "nothing listens", as before.)"""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # (bound, never listening: connections to it are refused)
        links = _objects(server, 4)
        loop = LoopDriver(connections=16)
        try:
            for row in range(1, 9):
                loop.submit(tmp_path, f"http://127.0.0.1:{port}/x{row}", row)
            for row, link in enumerate(links, 9):
                loop.submit(tmp_path, link, row)
            got = {}
            for _ in range(12):
                outcome, _ = loop.results.get(timeout=30)
                got[outcome.task_id] = outcome
        finally:
            loop.stop()
    assert {row: got[row].state for row in range(9, 13)} == dict.fromkeys(range(9, 13), ObjectState.DONE)
    assert all(got[row].code == "refused" and "refused" in got[row].error for row in range(1, 9))
    assert loop.loop._caps == {}

"""The egress policy on addresses (dlengine.net.egress): link-local and the
metadata services refused in every spelling an address can take; loopback
and private ranges allowed (on-premises mirrors live there)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from dlengine import errors
from dlengine.sources import http
from dlengine.sources.base import Request
from harness.httpd import TestHTTPServer


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP listener on 127.0.0.1 that counts accepted connections."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        try:
            while True:
                accepted.append(server.accept()[0])
        except OSError:
            pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.close()
    for conn in accepted:
        conn.close()


def test_guarded_connection_checks_what_the_name_resolves_to(monkeypatch: pytest.MonkeyPatch, listener: int) -> None:
    """A name that resolves to a link-local address is refused before any
    connect, whatever the parser thought; a name that resolves to both is
    connected on its allowed address only."""
    real = socket.getaddrinfo

    def resolver(host: str, port: int, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        if host == "metadata.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]
        if host == "both.test":
            mixed = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]
            return mixed + real("127.0.0.1", port, socket.AF_INET, socket.SOCK_STREAM)
        return real(host, port, *args, **kwargs)  # type: ignore[arg-type]

    connects: list[object] = []
    original = socket.socket.connect

    def connect(self: socket.socket, address: object) -> None:
        connects.append(address)
        original(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    monkeypatch.setattr(socket.socket, "connect", connect)
    with pytest.raises(errors.SourceDeniedError, match=r"169\.254\.169\.254"):
        http.guarded_connection(("metadata.test", listener), 2.0)
    assert connects == []
    sock = http.guarded_connection(("both.test", listener), 2.0)
    sock.close()
    assert connects == [("127.0.0.1", listener)]


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every address a socket of this process tries to connect to; anything
    but 127.0.0.1 is refused right here, so no test can reach the network."""
    seen: list[object] = []
    original = socket.socket.connect

    def connect(self: socket.socket, address: object) -> None:
        seen.append(address)
        if not (isinstance(address, tuple) and address[0] == "127.0.0.1"):
            raise ConnectionRefusedError(f"test guard: not connecting to {address!r}")
        original(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    return seen


def _source() -> http.HTTPSource:
    return http.HTTPSource(pool_size=2, max_object_size=1 << 30, min_rate=0)


def test_a_link_parsers_disagree_on_is_checked_where_it_connects(connects: list[object], httpd: TestHTTPServer) -> None:
    """``http://169.254.169.254\\@127.0.0.1/`` is 127.0.0.1 to urllib.parse
    and 169.254.169.254 to urllib3: the check is on what urllib3 connects."""
    httpd.put("/latest/meta-data/", b"not the metadata service")
    request = Request(f"http://169.254.169.254\\@127.0.0.1:{httpd.port}/latest/meta-data/", timeout=2.0)
    with pytest.raises(errors.SourceDeniedError, match="link-local"):
        _source().open(request)
    assert connects == []


def test_a_name_that_rebinds_is_checked_on_every_connection(
    monkeypatch: pytest.MonkeyPatch, connects: list[object], httpd: TestHTTPServer
) -> None:
    """DNS rebinding: the name is harmless when first resolved and points at
    the metadata service on the next answer; the address connected is checked."""
    answers = iter(["127.0.0.1"] + ["169.254.169.254"] * 10)

    def resolver(host: str, port: int, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        address = next(answers) if host == "rebind.test" else host
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    httpd.put("/x", b"harmless")
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    source = _source()
    first = source.open(Request(f"http://rebind.test:{httpd.port}/x", timeout=2.0, headers={"Connection": "close"}))
    assert b"".join(first.chunks(1024)) == b"harmless"
    first.close()
    with pytest.raises(errors.SourceDeniedError, match=r"169\.254\.169\.254"):
        source.open(Request(f"http://rebind.test:{httpd.port}/x", timeout=2.0))
    assert all(address[0] == "127.0.0.1" for address in connects)  # type: ignore[index]

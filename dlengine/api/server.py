"""``dlengine serve``: the supervisor, with the HTTP API in a thread beside it.

The API is the standard library's ``ThreadingHTTPServer`` speaking HTTP/1.1
(keep-alive), with at most ``API_THREADS`` connections served at once
(``slots``). Every request borrows a ``Client`` (one SQLite connection)
from a small pool, so no connection is ever used by two threads at once.
Requests a web page may have sent are refused first (``guard``).
Answers are JSON, errors included: ``{"message": ..., "error": ..., "status": ...}``.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import socketserver
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from dlengine import __version__
from dlengine.api import guard
from dlengine.api.listen import ListenAddress, parse_listen, read_token, require_token_off_loopback
from dlengine.api.routes import ApiError, Reply, Request, call, resolve
from dlengine.api.slots import Slots
from dlengine.client import Client
from dlengine.config import Settings
from dlengine.errors import DlengineError, SpecError, SupervisorRunning
from dlengine.supervisor.supervisor import Supervisor

log = logging.getLogger("dlengine.api")

MAX_BODY_BYTES = 16 << 20
"""Largest request body; a multi job of ~100,000 links fits. Bigger lists
belong in a range template or a file given to ``dlengine submit``."""
READ_TIMEOUT = 60.0  # seconds a connection may stay silent mid-request
IDLE_TIMEOUT = 15.0  # seconds a keep-alive connection may wait for its next request
API_THREADS = 32
"""Connections served at once (a thread each); idle ones yield their slot."""
_IDLE_CLIENTS = 16


class ClientPool:
    """Clients (SQLite connections) lent to one request thread at a time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._idle: list[Client] = []
        self._lock = threading.Lock()

    @contextmanager
    def borrow(self) -> Iterator[Client]:
        with self._lock:
            client = self._idle.pop() if self._idle else None
        client = client or Client(self.settings)
        try:
            yield client
        except (ApiError, DlengineError):
            self._give_back(client)  # refused requests roll their transaction back
            raise
        except BaseException:
            client.close()  # its connection may be mid-transaction: do not reuse
            raise
        self._give_back(client)

    def _give_back(self, client: Client) -> None:
        with self._lock:
            if len(self._idle) < _IDLE_CLIENTS:
                self._idle.append(client)
                return
        client.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for client in idle:
            client.close()


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: ListenAddress, pool: ClientPool, token: str | None) -> None:
        self.address_family = address.family
        self.pool = pool
        self.token = token
        self.slots = Slots(API_THREADS)
        super().__init__((address.host, address.port), ApiHandler)
        self.authority = guard.Authority.of((address.host, self.server_name), token)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.take():
            self._refuse_busy(request)
            return
        try:
            super().process_request(request, client_address)  # starts its thread
        except BaseException:
            self.slots.done(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.done(request)

    def _refuse_busy(self, request: socket.socket) -> None:
        body = json.dumps(ApiError(503, f"too many connections (at most {API_THREADS} at once)").payload())
        head = f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {len(body) + 1}"
        try:
            request.settimeout(1.0)
            request.sendall(f"{head}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}\n".encode())
        except OSError:
            pass
        self.shutdown_request(request)

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks DNS for our name (getfqdn): skip it
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{ListenAddress(self.server_name, self.server_port)}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):  # the client went away
            log.debug("%s: %s", client_address, exc)
            return
        log.exception("error while answering %s", client_address)


class ApiHandler(BaseHTTPRequestHandler):
    server: ApiServer
    protocol_version = "HTTP/1.1"
    server_version = f"dlengine/{__version__}"
    timeout = READ_TIMEOUT
    # headers and body go out in two writes: without TCP_NODELAY the body
    # waits for the client's delayed ACK (40 ms per keep-alive request)
    disable_nagle_algorithm = True

    def __getattr__(self, name: str) -> Callable[[], None]:
        # every method, known or not, goes through one place: unknown ones
        # get 405 from the routing table instead of http.server's HTML 501
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def handle_one_request(self) -> None:
        self.connection.settimeout(IDLE_TIMEOUT)
        self.server.slots.idle(self.connection)
        super().handle_one_request()

    def _handle(self) -> None:
        if not self.server.slots.busy(self.connection):
            self.close_connection = True  # evicted while its request arrived: do nothing of it
            return
        self.connection.settimeout(READ_TIMEOUT)
        try:
            self._authorize()
            self._guard()
            body = self._read_body()
            reply = self._dispatch(body)
        except ApiError as exc:
            self._send_json(exc.status, exc.payload(), exc.headers)
            return
        self._send_json(reply.status, reply.payload)

    def _dispatch(self, body: bytes) -> Reply:
        url = urlsplit(self.path)
        request = Request(self.command, url.path, url.query, body)
        handler = resolve(request.method, request.path)
        try:
            with self.server.pool.borrow() as client:
                return call(handler, client, request)
        except ApiError:
            raise
        except Exception as exc:
            log.exception("internal error in %s %s", request.method, request.path)
            raise ApiError(500, f"internal error: {type(exc).__name__}; see the server log") from None

    # -- security and framing

    def handle_expect_100(self) -> bool:
        # refuse a body we would refuse anyway before the client sends it
        try:
            self._authorize()
            self._guard()
        except ApiError as exc:
            self._send_json(exc.status, exc.payload(), exc.headers)
            return False
        return super().handle_expect_100()

    def _authorize(self) -> None:
        token = self.server.token
        if token is None:
            return
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        given = value.strip().encode("utf-8", "surrogateescape")
        if scheme.lower() == "bearer" and hmac.compare_digest(given, token.encode()):
            return
        self.close_connection = True
        raise ApiError(
            401, "missing or wrong bearer token (Authorization: Bearer <token>)", headers={"WWW-Authenticate": "Bearer"}
        )

    def _guard(self) -> None:
        has_body = "chunked" in self.headers.get("Transfer-Encoding", "").lower() or self._content_length() > 0
        http11 = self.request_version >= "HTTP/1.1"
        try:
            guard.check(self.headers, self.server.authority, has_body=has_body, http11=http11)
        except ApiError:
            self.close_connection = True  # its body, if any, is not read
            raise

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = self._content_length()
        body = self.rfile.read(length) if length else b""
        if len(body) != length:
            self.close_connection = True
            raise ApiError(400, f"body ended after {len(body)} of {length} bytes")
        return body

    def _content_length(self) -> int:
        values = set(self.headers.get_all("Content-Length") or [])
        if not values:
            return 0
        text = values.pop().strip()
        if values or not (text.isascii() and text.isdigit()):
            self.close_connection = True
            raise ApiError(400, "invalid Content-Length")
        return self._check_size(int(text))

    def _check_size(self, size: int) -> int:
        if size > MAX_BODY_BYTES:
            self.close_connection = True
            raise ApiError(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        return size

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while size := self._chunk_size():
            self._check_size(len(body) + size)
            body += self.rfile.read(size)
            self.rfile.readline(8)  # the CRLF after the chunk
        while self.rfile.readline(8192).strip():  # trailer fields
            pass
        return bytes(body)

    def _chunk_size(self) -> int:
        line = self.rfile.readline(1024).split(b";", 1)[0].strip()
        if not line or any(c not in b"0123456789abcdefABCDEF" for c in line):
            self.close_connection = True
            raise ApiError(400, "malformed chunked body")
        return int(line, 16)

    # -- answers

    def _send_json(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        data = (json.dumps(payload) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors http.server finds itself (bad request line, headers too
        long) as JSON too."""
        self.close_connection = True
        self._send_json(code, ApiError(code, message or HTTPStatus(code).phrase).payload())

    def log_message(self, format: str, *args: Any) -> None:
        # the request line and status only: never headers (the token)
        log.info("%s %s", self.address_string(), format % args)

    def log_error(self, format: str, *args: Any) -> None:
        log.warning("%s %s", self.address_string(), format % args)


def make_server(address: ListenAddress, pool: ClientPool, token: str | None) -> ApiServer:
    """Bind the API (not serving yet)."""
    require_token_off_loopback(address, token)
    try:
        return ApiServer(address, pool, token)
    except OSError as exc:
        raise SpecError("--listen", f"cannot listen on {address}: {exc.strerror or exc}") from None


def serve(settings: Settings, listen: str, token_file: str | None = None) -> int:
    """Run the supervisor (forever, until SIGTERM or SIGINT) with the API
    answering in a thread. Call from the main thread."""
    address = parse_listen(listen)
    token = read_token(token_file) if token_file else None
    supervisor = Supervisor(settings, linger=None)
    if supervisor.lock.is_held():
        raise SupervisorRunning(f"a supervisor is already running for {settings.home} (pid {supervisor.lock.holder()})")
    pool = ClientPool(settings)
    server = make_server(address, pool, token)
    thread = threading.Thread(target=server.serve_forever, name="dlengine-api", daemon=True)
    thread.start()
    print(f"dlengine: serving {server.url}/v1/download for {settings.home}", flush=True)
    supervisor.install_signal_handlers()
    try:
        supervisor.run()
    finally:
        server.shutdown()
        server.server_close()
        pool.close()
    return 0

"""A threaded HTTP/1.1 test server on 127.0.0.1: the download source of the tests.

What it serves, looked up in this order:

- in-memory objects (``put``), with an MD5 ETag;
- generated objects (``put_generated``): deterministic pseudo-random bytes
  of any size, produced from one 1 MiB block per seed, so a 10 GiB object
  costs 1 MiB of memory;
- files under a directory (``serve_directory``), sent with ``os.sendfile``.

It speaks enough HTTP for resumable downloads: keep-alive, HEAD, single
byte ranges (``N-``, ``N-M``, ``-K``) and 416, ``If-Range``, ``If-Match``,
``If-Unmodified-Since``, ``If-None-Match``, ``If-Modified-Since`` and an
optional ``Content-MD5``.  Faults are injected per path with ``Fault``
(status + Retry-After or Location, reset after N bytes, stall, wrong MD5,
ignored Range or If-Range, throttled rate, a drip of single bytes, an
endless body, a body longer than declared, delay), and every content byte written to a socket
is counted, per path and per request, so tests can assert exactly how much
was downloaded twice.

Run it standalone for benchmarks::

    python harness/httpd.py --root DIR --port 8080 \
        --generate "/abc/shard-{001..010}.tar:10MiB"
"""

from __future__ import annotations

import abc
import argparse
import base64
import email.utils
import functools
import hashlib
import http.server
import os
import random
import re
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import types
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

__all__ = [
    "BLOCK_SIZE",
    "Fault",
    "RequestRecord",
    "TestHTTPServer",
    "main",
]

BLOCK_SIZE = 1 << 20
"""Period of generated content; each block also starts with its own header."""

_HEADER_SIZE = 16  # bytes at the start of each generated block that name the block
_PIECE = 1 << 20  # largest single write, so accounting and stops stay responsive
_DRAIN_TIMEOUT = 2.0  # how long a reset waits for the client to ACK what was sent
_QUIET_ERRORS = (ConnectionError, TimeoutError)  # clients that went away


@dataclass(frozen=True)
class Fault:
    """What to do wrong on the next requests for a path.

    All fields are optional and combine: ``delay`` comes first, then
    ``status`` replaces the whole answer; the body faults (``reset_after``,
    ``stall_*``, ``rate``, ``ignore_range``, ``wrong_md5``) shape a normal
    answer.  Byte counts are relative to the start of the body sent, so a
    ranged request stalls or resets N bytes into its range.
    """

    status: int | None = None
    """Answer this status (e.g. 503, 429, 404, 403, 408) with a short body."""
    retry_after: str | int | None = None
    """``Retry-After`` header sent with ``status``."""
    location: str | None = None
    """``Location`` header sent with ``status`` (a redirect)."""
    times: int | None = None
    """How many matching requests the fault applies to; 0/None = forever."""
    reset_after: int | None = None
    """Send the headers and N body bytes, then reset the connection (RST)."""
    stall_after: int | None = None
    """Send N body bytes, then sleep ``stall_seconds``."""
    stall_seconds: float = 0.0
    stall_close: bool = False
    """After the stall, close the connection (clean FIN) instead of going on."""
    wrong_md5: bool = False
    """Send a ``Content-MD5`` that does not match the content (200 answers)."""
    ignore_range: bool = False
    """Answer a ranged request with 200 and the whole body."""
    ignore_if_range: bool = False
    """Answer a ranged request with 206 even when ``If-Range`` names
    another version (the bytes of the current one)."""
    drip: float | None = None
    """Send the body one byte at a time, sleeping this long before each."""
    endless: bool = False
    """Answer 200 without a Content-Length and send bytes until the client
    goes away (a close-delimited body that never ends)."""
    extra_bytes: int = 0
    """Send this many bytes more than the Content-Length declares, then close."""
    rate: int | None = None
    """Throttle the body to this many bytes per second."""
    delay: float = 0.0
    """Sleep this long before answering at all."""
    hold: threading.Event | None = None
    """Answer only once this event is set (after ``delay``): requests held
    in flight together, for as long as the test needs, however slow the box."""
    methods: frozenset[str] | None = None
    """Only requests with these methods match (and count for ``times``)."""
    ranged: bool | None = None
    """Only ranged requests (True) or only requests without a ``Range``
    (False) match (and count for ``times``); None: both."""
    busy_beyond: int | None = None
    """Answer 503 (``Retry-After: 1``) to a request that finds this many
    others in flight already, as a server with a limit on connections
    does; the others get the rest of the fault."""

    def __post_init__(self) -> None:
        for name in ("times", "reset_after", "stall_after", "extra_bytes", "busy_beyond"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"Fault.{name} must be >= 0, got {value}")
        if self.rate is not None and self.rate <= 0:
            raise ValueError(f"Fault.rate must be > 0, got {self.rate}")
        if self.delay < 0 or self.stall_seconds < 0 or (self.drip is not None and self.drip < 0):
            raise ValueError("Fault.delay, Fault.stall_seconds and Fault.drip must be >= 0")

    def applies_to(self, method: str, ranged: bool = False) -> bool:
        """Whether a request with this method (and ``Range`` or not) matches the fault."""
        return (self.methods is None or method in self.methods) and self.ranged in (None, ranged)


_NO_FAULT = Fault()


@dataclass(frozen=True)
class RequestRecord:
    """One GET or HEAD, as the server saw it (a snapshot)."""

    method: str
    path: str
    headers: dict[str, str]
    status: int
    """Status sent; 0 while the request is in flight before its headers."""
    start: float
    """``time.monotonic()`` when the request headers had been parsed."""
    end: float | None
    """``time.monotonic()`` when the answer was finished or aborted; None
    while the request is still in flight."""
    bytes_sent: int
    """Content bytes written to the socket (0 for HEAD and error bodies)."""
    connection: int
    """Serial number of the TCP connection; equal numbers mean keep-alive."""


# -- content ---------------------------------------------------------------


class _Sink(Protocol):
    """Where content writes its bytes: a socket, a hash or a buffer."""

    def send_views(self, views: Sequence[memoryview]) -> None: ...

    def send_file(self, fd: int, offset: int, count: int) -> None: ...


class _FeedSink:
    """A sink that hands every piece to a function (hash update, append)."""

    def __init__(self, feed: Callable[[bytes | memoryview], object]) -> None:
        self._feed = feed

    def send_views(self, views: Sequence[memoryview]) -> None:
        for view in views:
            self._feed(view)

    def send_file(self, fd: int, offset: int, count: int) -> None:
        end = offset + count
        while offset < end:
            data = os.pread(fd, min(_PIECE, end - offset), offset)
            if not data:
                raise EOFError("file shrank while being read")
            self._feed(data)
            offset += len(data)


class _Content(abc.ABC):
    """An object the server can answer with; immutable once built."""

    def __init__(self, size: int, etag: str, last_modified: float, content_md5: bool | None) -> None:
        self.size = size
        self.etag = etag
        self.last_modified = last_modified
        self.content_md5 = content_md5
        self._md5: bytes | None = None

    @abc.abstractmethod
    def emit(self, sink: _Sink, start: int, end: int) -> None:
        """Write bytes ``[start, end)`` to ``sink`` in pieces of at most 1 MiB."""

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        """Bytes ``[start, end)`` as one ``bytes``."""
        out = bytearray()
        self.emit(_FeedSink(out.extend), start, self.size if end is None else end)
        return bytes(out)

    def md5(self) -> bytes:
        """MD5 digest of the whole content, computed once."""
        if self._md5 is None:
            digest = hashlib.md5(usedforsecurity=False)
            self.emit(_FeedSink(digest.update), 0, self.size)
            self._md5 = digest.digest()
        return self._md5


class _MemoryContent(_Content):
    def __init__(
        self,
        data: bytes,
        etag: str | None,
        last_modified: float,
        content_md5: bool | None,
    ) -> None:
        digest = hashlib.md5(data, usedforsecurity=False).digest()
        super().__init__(len(data), etag or f'"{digest.hex()}"', last_modified, content_md5)
        self._md5 = digest
        self._view = memoryview(data)

    def emit(self, sink: _Sink, start: int, end: int) -> None:
        for pos in range(start, end, _PIECE):
            sink.send_views([self._view[pos : min(pos + _PIECE, end)]])


@functools.lru_cache(maxsize=8)
def _base_block(seed: int) -> bytes:
    return random.Random(seed).randbytes(BLOCK_SIZE)


def _block_header(seed: int, index: int) -> bytes:
    # Without a per-block header the content would repeat every 1 MiB and a
    # client that is off by a whole block would still see "correct" bytes.
    key = f"{seed}:{index}".encode()
    return hashlib.blake2b(key, digest_size=_HEADER_SIZE).digest()


class _GeneratedContent(_Content):
    def __init__(
        self,
        size: int,
        seed: int,
        etag: str,
        last_modified: float,
        content_md5: bool | None,
    ) -> None:
        super().__init__(size, etag, last_modified, content_md5)
        self.seed = seed
        self._base = memoryview(_base_block(seed))

    def emit(self, sink: _Sink, start: int, end: int) -> None:
        pos = start
        while pos < end:
            index, offset = divmod(pos, BLOCK_SIZE)
            stop = min(offset + end - pos, BLOCK_SIZE)
            sink.send_views(self._block_views(index, offset, stop))
            pos += stop - offset

    def _block_views(self, index: int, offset: int, stop: int) -> list[memoryview]:
        views = []
        if offset < _HEADER_SIZE:
            header = memoryview(_block_header(self.seed, index))
            views.append(header[offset : min(stop, _HEADER_SIZE)])
        if stop > _HEADER_SIZE:
            views.append(self._base[max(offset, _HEADER_SIZE) : stop])
        return views


class _DiskContent(_Content):
    def __init__(self, path: str, st: os.stat_result, content_md5: bool | None) -> None:
        etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
        super().__init__(st.st_size, etag, st.st_mtime, content_md5)
        self.path = path
        self.version = (st.st_size, st.st_mtime_ns)

    def emit(self, sink: _Sink, start: int, end: int) -> None:
        with open(self.path, "rb") as file:
            sink.send_file(file.fileno(), start, end - start)


# -- HTTP helpers ------------------------------------------------------------


class _RangeNotSatisfiable(Exception):
    pass


_RANGE_RE = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*")


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``[start, end)`` of a single byte range, or None to send everything.

    Raises ``_RangeNotSatisfiable`` for a valid range outside the content.
    Multiple ranges and malformed headers are ignored, as RFC 9110 allows.
    """
    match = _RANGE_RE.fullmatch(header)
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _RangeNotSatisfiable
        return max(0, size - suffix), size
    start = int(first)
    if last != "" and int(last) < start:
        return None
    if start >= size:
        raise _RangeNotSatisfiable
    return start, size if last == "" else min(int(last) + 1, size)


def _http_date(timestamp: float) -> str:
    return email.utils.formatdate(timestamp, usegmt=True)


def _parse_http_date(value: str) -> int | None:
    try:
        return int(email.utils.parsedate_to_datetime(value).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _etag_listed(header: str, etag: str, *, weak: bool) -> bool:
    """Whether ``etag`` is in an If-Match / If-None-Match list."""
    if header.strip() == "*":
        return True
    for candidate in (tag.strip() for tag in header.split(",")):
        if weak and candidate.removeprefix("W/") == etag.removeprefix("W/"):
            return True
        if not weak and candidate == etag and not etag.startswith("W/"):
            return True
    return False


def _quote_etag(etag: str) -> str:
    return etag if etag.startswith(('"', 'W/"')) else f'"{etag}"'


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _wait_drained(sock: socket.socket, timeout: float) -> None:
    """Wait until the peer has ACKed everything written (Linux; else no-op).

    A reset throws away unsent data, so without this the client would see
    fewer than ``reset_after`` bytes and tests would be timing dependent.
    """
    try:
        import fcntl
        import termios

        request = termios.TIOCOUTQ
    except (ImportError, AttributeError):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            queued = fcntl.ioctl(sock.fileno(), request, b"\0\0\0\0")
        except OSError:
            return
        if struct.unpack("i", queued)[0] == 0:
            return
        time.sleep(0.001)


@dataclass
class _Exchange:
    """Bookkeeping of one request in flight."""

    method: str
    path: str
    headers: dict[str, str]
    connection: int
    start: float
    status: int = 0
    bytes_sent: int = 0
    end: float | None = None

    def record(self) -> RequestRecord:
        return RequestRecord(
            self.method,
            self.path,
            self.headers,
            self.status,
            self.start,
            self.end,
            self.bytes_sent,
            self.connection,
        )


@dataclass
class _FaultSlot:
    fault: Fault
    remaining: int | None


# -- request handler ---------------------------------------------------------


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 (keep-alive), GET and HEAD answered by one ``_serve``, and
    no line per request on stderr: each server keeps its own record of what
    it saw (``RequestRecord``, the fake Hub's ``Seen``), which tests read."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _serve(self, *, head: bool) -> None:
        raise NotImplementedError


class _Handler(QuietHandler):
    server_version = "dlengine-testhttpd/1"
    disable_nagle_algorithm = True  # small header writes must not wait for ACKs
    server: TestHTTPServer
    _connection_id = 0
    _exchange: _Exchange

    def setup(self) -> None:
        super().setup()
        self._connection_id = self.server._register(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server._unregister(self.connection)

    def version_string(self) -> str:
        return self.server_version

    # -- one request

    def _serve(self, *, head: bool) -> None:
        self._discard_request_body()
        path = unquote(urlsplit(self.path).path)
        headers = dict(self.headers.items())
        exchange = self.server._begin(self.command, path, headers, self._connection_id)
        self._exchange = exchange
        try:
            self._respond(exchange.path, head)
        finally:
            self.server._end(exchange)

    def _discard_request_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        while length > 0:
            chunk = self.rfile.read(min(length, _PIECE))
            if not chunk:
                break
            length -= len(chunk)

    def _respond(self, path: str, head: bool) -> None:
        fault = self.server._take_fault(path, self.command, "Range" in self.headers) or _NO_FAULT
        if fault.busy_beyond is not None and self.server.in_flight > fault.busy_beyond:  # (before any wait)
            self._send_message(503, "too many connections", {"Retry-After": "1"}, head)
            return
        if fault.delay and not self.server._sleep(fault.delay):
            self.close_connection = True
            return
        if fault.hold is not None and not self.server._held(fault.hold):
            self.close_connection = True
            return
        if fault.status is not None:
            self._send_fault_status(fault, head)
            return
        content = self.server._lookup(path)
        if content is None:
            self._send_message(404, "not found", {}, head)
            return
        blocked = self._precondition_status(content)
        if blocked == 304:
            self._send_headers(304, self._validators(content))
        elif blocked is not None:
            self._send_message(blocked, "precondition failed", {}, head)
        else:
            self._send_content(content, fault, head)

    def _send_fault_status(self, fault: Fault, head: bool) -> None:
        assert fault.status is not None
        extra = {}
        if fault.retry_after is not None:
            extra["Retry-After"] = str(fault.retry_after)
        if fault.location is not None:
            extra["Location"] = fault.location
        if fault.status in (204, 304):  # no body, by definition
            self._send_headers(fault.status, extra)
            return
        self._send_message(fault.status, "injected fault", extra, head)

    def _precondition_status(self, content: _Content) -> int | None:
        """412 or 304 when a conditional header says so (RFC 9110 13.2.2)."""
        if not self._preconditions_hold(content):
            return 412
        return 304 if self._not_modified(content) else None

    def _preconditions_hold(self, content: _Content) -> bool:
        if_match = self.headers.get("If-Match")
        if if_match is not None:
            return _etag_listed(if_match, content.etag, weak=False)
        since = _parse_http_date(self.headers.get("If-Unmodified-Since") or "")
        return since is None or int(content.last_modified) <= since

    def _not_modified(self, content: _Content) -> bool:
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            return _etag_listed(if_none_match, content.etag, weak=True)
        since = _parse_http_date(self.headers.get("If-Modified-Since") or "")
        return since is not None and int(content.last_modified) <= since

    def _requested_range(self, content: _Content, fault: Fault) -> tuple[int, int] | None:
        header = self.headers.get("Range")
        if header is None or fault.ignore_range:
            return None
        if not fault.ignore_if_range and not self._if_range_holds(content):
            return None
        return _parse_range(header, content.size)

    def _if_range_holds(self, content: _Content) -> bool:
        value = (self.headers.get("If-Range") or "").strip()
        if not value:
            return True
        if value.startswith(('"', "W/")):
            return value == content.etag and not value.startswith("W/")
        return _parse_http_date(value) == int(content.last_modified)

    def _send_content(self, content: _Content, fault: Fault, head: bool) -> None:
        if fault.endless:
            self._send_endless(content, head)
            return
        headers = self._validators(content)
        headers["Accept-Ranges"] = "bytes"
        headers["Content-Type"] = "application/octet-stream"
        try:
            span = self._requested_range(content, fault)
        except _RangeNotSatisfiable:
            headers["Content-Range"] = f"bytes */{content.size}"
            headers["Content-Length"] = "0"
            self._send_headers(416, headers)
            return
        start, end = span or (0, content.size)
        if span is None:
            headers.update(self._md5_headers(content, fault))
        else:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{content.size}"
        headers["Content-Length"] = str(end - start)
        self._send_headers(200 if span is None else 206, headers)
        if head:
            return
        if fault.drip is not None:
            self._drip(content, start, end, fault.drip)
            return
        self._send_body(content, start, end, fault)
        if fault.extra_bytes:
            self.send_views([memoryview(b"X" * fault.extra_bytes)])
            self.close_connection = True

    def _send_endless(self, content: _Content, head: bool) -> None:
        """200, no length, ``Connection: close``, the content over and over."""
        self.close_connection = True
        headers = self._validators(content) | {"Content-Type": "application/octet-stream", "Connection": "close"}
        self._send_headers(200, headers)
        while not head and content.size and not self.server._stopping.is_set():
            content.emit(self, 0, content.size)

    def _drip(self, content: _Content, start: int, end: int, interval: float) -> None:
        for pos in range(start, end):
            if not self.server._sleep(interval):
                self.close_connection = True
                return
            content.emit(self, pos, pos + 1)

    @staticmethod
    def _validators(content: _Content) -> dict[str, str]:
        return {
            "ETag": content.etag,
            "Last-Modified": _http_date(content.last_modified),
        }

    def _md5_headers(self, content: _Content, fault: Fault) -> dict[str, str]:
        # Only on 200: what Content-MD5 means for a 206 was never agreed on
        # (RFC 7231 dropped the header for that reason).
        if fault.wrong_md5:
            wrong = hashlib.md5(content.md5(), usedforsecurity=False).digest()
            return {"Content-MD5": _b64(wrong)}
        wanted = content.content_md5
        if wanted is None:
            wanted = self.server.content_md5
        return {"Content-MD5": _b64(content.md5())} if wanted else {}

    def _send_message(self, status: int, text: str, extra: dict[str, str], head: bool) -> None:
        body = f"{status} {text}\n".encode()
        headers = {"Content-Type": "text/plain", "Content-Length": str(len(body))}
        self._send_headers(status, headers | extra)
        if not head:
            self.wfile.write(body)

    def _send_headers(self, status: int, headers: dict[str, str]) -> None:
        self._exchange.status = status  # before the client can see it
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection and "Connection" not in headers:
            # The client asked to close (or a fault closes): say so, as real
            # servers do, so no client reuses a socket about to be closed.
            self.send_header("Connection", "close")
        self.end_headers()

    # -- body, with the body faults

    def _send_body(self, content: _Content, start: int, end: int, fault: Fault) -> None:
        stop = end if fault.reset_after is None else min(end, start + fault.reset_after)
        pos = start
        if fault.stall_after is not None and start + fault.stall_after < end:
            pause = min(start + fault.stall_after, stop)
            if not self._emit(content, pos, pause, fault.rate):
                return
            pos = pause
            if not self.server._sleep(fault.stall_seconds) or fault.stall_close:
                self.close_connection = True
                return
        if self._emit(content, pos, stop, fault.rate) and stop < end:
            self._reset_connection()

    def _emit(self, content: _Content, start: int, end: int, rate: int | None) -> bool:
        """Send ``[start, end)``, paced to ``rate``; False if the server stopped."""
        if rate is None:
            content.emit(self, start, end)
            return True
        piece = max(1, min(_PIECE, rate // 20))  # ~20 writes a second
        began = time.monotonic()
        for pos in range(start, end, piece):
            content.emit(self, pos, min(pos + piece, end))
            ahead = (min(pos + piece, end) - start) / rate - (time.monotonic() - began)
            if ahead > 0 and not self.server._sleep(ahead):
                self.close_connection = True
                return False
        return True

    def _reset_connection(self) -> None:
        """Abort: RST instead of FIN, as a crashed server or a middlebox would."""
        self.close_connection = True
        sock = self.connection
        _wait_drained(sock, _DRAIN_TIMEOUT)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # detach() + os.close() closes now, skipping the shutdown(SHUT_WR)
        # (a FIN) that socketserver would do first.
        self.server._unregister(sock)
        os.close(sock.detach())

    # -- the _Sink interface, counting every byte the kernel accepted

    def send_views(self, views: Sequence[memoryview]) -> None:
        pending = [view for view in views if len(view)]
        while pending:
            attempt = sum(len(view) for view in pending)
            sent = self._counted(attempt, functools.partial(self.connection.sendmsg, pending))
            while pending and sent >= len(pending[0]):
                sent -= len(pending[0])
                pending.pop(0)
            if sent:
                pending[0] = pending[0][sent:]

    def send_file(self, fd: int, offset: int, count: int) -> None:
        out = self.connection.fileno()
        end = offset + count
        while offset < end:
            attempt = min(_PIECE, end - offset)
            sent = self._counted(attempt, functools.partial(os.sendfile, out, fd, offset, attempt))
            if sent == 0:
                raise ConnectionAbortedError("file shrank while being sent")
            offset += sent

    def _counted(self, attempt: int, send: Callable[[], int]) -> int:
        """Run ``send``, counting ``attempt`` bytes first and taking back the rest.

        Counting before the kernel has the bytes means a client never holds
        bytes the counters miss; once ``send`` returns the count is exact.
        """
        self.server._account(self._exchange, attempt)
        sent = 0
        try:
            sent = send()
        finally:
            if sent != attempt:
                self.server._account(self._exchange, sent - attempt)
        return sent


# -- the server --------------------------------------------------------------


class TestHTTPServer(http.server.ThreadingHTTPServer):
    """Threaded HTTP/1.1 server on 127.0.0.1 with a content store and faults.

    Bound (port 0 = any free port) when constructed; ``start()`` serves
    from a background thread, ``stop()`` closes every connection.  Use it
    as a context manager.  All methods are thread-safe.
    """

    __test__ = False  # not a pytest test class, despite the name
    daemon_threads = True
    block_on_close = False  # stop() must not wait for stalled handlers
    allow_reuse_address = True
    request_queue_size = 1024
    protocol_version = "HTTP/1.1"

    def __init__(
        self,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        root: str | os.PathLike[str] | None = None,
        content_md5: bool = False,
    ) -> None:
        self.content_md5 = content_md5
        """Send Content-MD5 on 200 answers for objects that do not say."""
        self._lock = threading.Condition()
        self._store: dict[str, _Content] = {}
        self._disk_cache: dict[str, _DiskContent] = {}
        self._root: str | None = None
        self._faults: dict[str | None, _FaultSlot] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._connections: dict[socket.socket, int] = {}
        self._connection_serial = 0
        self._stamp = 0
        self.errors: list[BaseException] = []
        """Unexpected handler exceptions (not client disconnects)."""
        self._init_stats()
        super().__init__((host, port), _Handler)
        if root is not None:
            self.serve_directory(root)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), a reverse DNS lookup that
        # can take seconds on some machines.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    # -- lifecycle

    @property
    def port(self) -> int:
        return self.server_port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, without a trailing slash."""
        return f"http://{self.server_name}:{self.server_port}"

    def start(self) -> TestHTTPServer:
        """Serve from a daemon thread; returns self."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"httpd:{self.server_port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket and every connection."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
        with self._lock:
            connections = list(self._connections)
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server_close()

    def __enter__(self) -> TestHTTPServer:
        if self._thread is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.stop()

    def handle_error(
        self,
        request: socket.socket | tuple[bytes, socket.socket],
        client_address: object,
    ) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, _QUIET_ERRORS) or self._stopping.is_set():
            return
        if error is not None:
            self.errors.append(error)
        super().handle_error(request, client_address)

    # -- content

    def put(
        self,
        path: str,
        data: bytes,
        *,
        etag: str | None = None,
        last_modified: float | None = None,
        content_md5: bool | None = None,
    ) -> None:
        """Serve ``data`` at ``path``; the ETag defaults to the quoted MD5 hex.

        ``content_md5`` overrides the server-wide flag for this object.
        """
        content = _MemoryContent(
            bytes(data),
            _quote_etag(etag) if etag else None,
            time.time() if last_modified is None else last_modified,
            content_md5,
        )
        self._store_content(path, content)

    def put_generated(
        self,
        path: str,
        size: int,
        seed: int = 0,
        *,
        etag: str | None = None,
        last_modified: float | None = None,
        content_md5: bool | None = None,
    ) -> None:
        """Serve ``size`` deterministic pseudo-random bytes at ``path``.

        Memory use is one 1 MiB block per seed whatever the size.  The ETag
        defaults to ``"<size hex>-<ns stamp hex>"``, new on every call.
        """
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        with self._lock:
            self._stamp = max(self._stamp + 1, time.time_ns())
            stamp = self._stamp
        content = _GeneratedContent(
            size,
            seed,
            _quote_etag(etag) if etag else f'"{size:x}-{stamp:x}"',
            stamp / 1e9 if last_modified is None else last_modified,
            content_md5,
        )
        self._store_content(path, content)

    def delete(self, path: str) -> bool:
        """Stop serving ``path`` from memory; False if it was not there."""
        with self._lock:
            return self._store.pop(path, None) is not None

    def serve_directory(self, root: str | os.PathLike[str] | None) -> None:
        """Also serve files under ``root`` (after the in-memory objects)."""
        with self._lock:
            self._root = None if root is None else os.path.realpath(root)
            self._disk_cache.clear()

    def expected_bytes(self, path: str) -> bytes:
        """The whole content served at ``path``; KeyError if there is none."""
        content = self._lookup(path)
        if content is None:
            raise KeyError(path)
        return content.read()

    def etag(self, path: str) -> str:
        """The ETag served for ``path``; KeyError if there is none."""
        content = self._lookup(path)
        if content is None:
            raise KeyError(path)
        return content.etag

    def _store_content(self, path: str, content: _Content) -> None:
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        with self._lock:
            self._store[path] = content

    def _lookup(self, path: str) -> _Content | None:
        with self._lock:
            content = self._store.get(path)
            root = self._root
        if content is not None or root is None:
            return content
        return self._lookup_disk(root, path)

    def _lookup_disk(self, root: str, path: str) -> _DiskContent | None:
        parts = [part for part in path.split("/") if part]
        if not parts or any(part in (".", "..") for part in parts):
            return None
        full = os.path.join(root, *parts)
        try:
            st = os.stat(full)
        except (OSError, ValueError):
            return None
        if not os.path.isfile(full):
            return None
        with self._lock:
            cached = self._disk_cache.get(full)
            if cached is None or cached.version != (st.st_size, st.st_mtime_ns):
                cached = self._disk_cache[full] = _DiskContent(full, st, None)
        return cached

    # -- faults

    def set_fault(self, path: str, fault: Fault | None) -> None:
        """Inject ``fault`` on requests for ``path``; None clears it."""
        self._set_fault_slot(path, fault)

    def set_default_fault(self, fault: Fault | None) -> None:
        """Inject ``fault`` on every path that has no fault of its own."""
        self._set_fault_slot(None, fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _set_fault_slot(self, key: str | None, fault: Fault | None) -> None:
        with self._lock:
            if fault is None:
                self._faults.pop(key, None)
            else:
                self._faults[key] = _FaultSlot(fault, fault.times or None)

    def _take_fault(self, path: str, method: str, ranged: bool = False) -> Fault | None:
        with self._lock:
            for key in (path, None):
                slot = self._faults.get(key)
                if slot is not None and slot.fault.applies_to(method, ranged):
                    if slot.remaining is not None:
                        slot.remaining -= 1
                        if slot.remaining == 0:
                            del self._faults[key]
                    return slot.fault
        return None

    # -- accounting

    def _init_stats(self) -> None:
        self._bytes_sent = 0
        self._bytes_by_path: dict[str, int] = {}
        self._exchanges: list[_Exchange] = []
        self._in_flight = 0
        self._peak = 0

    @property
    def bytes_sent(self) -> int:
        """Content bytes written to sockets since the last ``reset_stats``."""
        with self._lock:
            return self._bytes_sent

    def bytes_sent_for(self, path: str) -> int:
        with self._lock:
            return self._bytes_by_path.get(path, 0)

    @property
    def requests(self) -> list[RequestRecord]:
        """GET/HEAD requests, in flight ones included, oldest first."""
        with self._lock:
            return [exchange.record() for exchange in self._exchanges]

    def request_count(self, path: str | None = None, method: str | None = None) -> int:
        """Requests seen, optionally only for ``path`` and/or ``method``."""
        return sum(
            1
            for record in self.requests
            if (path is None or record.path == path) and (method is None or record.method == method)
        )

    @property
    def peak_concurrency(self) -> int:
        """Most requests in flight at once (headers parsed to body done)."""
        with self._lock:
            return self._peak

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def reset_stats(self) -> None:
        with self._lock:
            in_flight = self._in_flight
            self._init_stats()
            self._in_flight = self._peak = in_flight

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until no request is in flight; False on timeout.

        A client holds the whole answer slightly before the server thread
        has finished the request, so call this before ``in_flight`` or
        ``RequestRecord.end`` must be final.
        """
        with self._lock:
            return self._lock.wait_for(lambda: self._in_flight == 0, timeout)

    def wait_in_flight(self, count: int, timeout: float = 10.0) -> bool:
        """Block until ``count`` requests are in flight at once; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._in_flight >= count, timeout)

    def wait_for_bytes(self, count: int, path: str | None = None, timeout: float = 10.0) -> bool:
        """Block until ``count`` content bytes were sent (for ``path``)."""

        def reached() -> bool:
            sent = self._bytes_sent if path is None else self._bytes_by_path.get(path, 0)
            return sent >= count

        with self._lock:
            return self._lock.wait_for(reached, timeout)

    def _begin(self, method: str, path: str, headers: dict[str, str], connection: int) -> _Exchange:
        exchange = _Exchange(method, path, headers, connection, time.monotonic())
        with self._lock:
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
            self._exchanges.append(exchange)
            self._lock.notify_all()  # wait_in_flight
        return exchange

    def _end(self, ex: _Exchange) -> None:
        with self._lock:
            ex.end = time.monotonic()
            self._in_flight -= 1
            self._lock.notify_all()

    def _account(self, ex: _Exchange, sent: int) -> None:
        with self._lock:
            ex.bytes_sent += sent
            self._bytes_sent += sent
            self._bytes_by_path[ex.path] = self._bytes_by_path.get(ex.path, 0) + sent
            self._lock.notify_all()

    def _register(self, sock: socket.socket) -> int:
        with self._lock:
            self._connection_serial += 1
            self._connections[sock] = self._connection_serial
            return self._connection_serial

    def _unregister(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections.pop(sock, None)

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless the server stops meanwhile; False if it did."""
        return not self._stopping.wait(seconds)

    def _held(self, gate: threading.Event) -> bool:
        """Wait until ``gate`` is set; False if the server stops first."""
        while not gate.wait(0.05):
            if self._stopping.is_set():
                return False
        return True


# -- command line --------------------------------------------------------------

_SIZE_RE = re.compile(r"(\d+)\s*([KMGT]i?B|B)?", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS |= {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_BRACE_RE = re.compile(r"\{(\d+)\.\.(\d+)\}")


def parse_size(text: str) -> int:
    """``"10KiB"`` -> 10240; bare numbers are bytes."""
    match = _SIZE_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"bad size: {text!r}")
    return int(match.group(1)) * _UNITS[(match.group(2) or "").lower()]


def expand_braces(pattern: str) -> Iterator[str]:
    """``"/s-{01..03}"`` -> ``/s-01``, ``/s-02``, ``/s-03`` (zero padding kept)."""
    match = _BRACE_RE.search(pattern)
    if match is None:
        yield pattern
        return
    first, last = match.groups()
    width = len(first) if first.startswith("0") else 0
    for number in range(int(first), int(last) + 1):
        head = pattern[: match.start()] + str(number).zfill(width)
        for tail in expand_braces(pattern[match.end() :]):
            yield head + tail


def _generate(server: TestHTTPServer, spec: str) -> None:
    pattern, _, size = spec.rpartition(":")
    if not pattern:
        raise ValueError(f"--generate wants PATTERN:SIZE, got {spec!r}")
    for path in expand_braces(pattern):
        server.put_generated(path, parse_size(size), zlib.crc32(path.encode()))


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until interrupted; print the URL on stdout when ready."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--root", type=Path, help="serve files under this directory")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--generate",
        action="append",
        default=[],
        metavar="PATTERN:SIZE",
        help='generated objects, e.g. "/abc/shard-{001..010}.tar:10MiB"',
    )
    parser.add_argument("--content-md5", action="store_true")
    args = parser.parse_args(argv)
    server = TestHTTPServer(args.port, host=args.host, root=args.root, content_md5=args.content_md5)
    for spec in args.generate:
        _generate(server, spec)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop cleanly
    with server:
        print(server.url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

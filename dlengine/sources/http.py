"""HTTP(S) source: pooled keep-alive connections through urllib3.

What an answer means is decided by ``sources.answer.interpret`` (shared
with every HTTP client); this module drives urllib3 around it:

- every connection is opened through ``guarded_connection``: the name is
  resolved once and each address is checked by the egress policy
  (``net.egress``) right before ``connect``, so no parser disagreement
  (``http://169.254.169.254\\@127.0.0.1/``) or DNS answer reaches a
  metadata service;
- redirects are followed here (``net.redirects``): at most 10, http/https
  only, secret headers kept to the job's own origin;
- a body is read under a minimum rate (``DLENGINE_MIN_RATE`` over each
  timeout window: a trickle is a stall) and cut at the maximum object size;
- urllib3's exceptions become dlengine's in ``translate``: a certificate
  that fails verification is permanent, a refused connection says so.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Iterator, Mapping
from typing import Any

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
)
from urllib3.exceptions import SSLError as U3SSLError
from urllib3.exceptions import TimeoutError as U3Timeout
from urllib3.util.connection import allowed_gai_family

from dlengine import config, errors
from dlengine.net import egress, redirects
from dlengine.sources.answer import Answer, conditional_headers, info_of, interpret, parse_retry_after, status_error
from dlengine.sources.base import ObjectInfo, Request

__all__ = [
    "HTTPSource",
    "HTTPStream",
    "conditional_headers",
    "guarded_connection",
    "guarded_pool_manager",
    "parse_retry_after",
    "translate",
]

_BASE_HEADERS = {"Accept-Encoding": "identity", "User-Agent": "dlengine"}
_SMALL_BODY = 64 << 10  # a redirect's body up to this is read to keep its connection


class MinimumRate:
    """A trickle is a stall: over each window of ``window`` seconds spent
    waiting for the source, at least ``rate`` bytes per second must arrive.
    Only time blocked on the socket counts, so a job's own byte throttle
    (which sleeps between reads) never looks like a slow source."""

    def __init__(self, rate: float, window: float, key: str) -> None:
        self._floor = rate * window
        self._window = window
        self._key = key
        self._waited = 0.0
        self._bytes = 0

    def add(self, waited: float, count: int) -> None:
        """Record ``count`` bytes received after ``waited`` seconds."""
        self._waited += waited
        self._bytes += count
        if self._waited < self._window:
            return
        if self._bytes < self._floor:
            raise errors.SourceTimeoutError(
                f"{self._key}: timeout: {self._bytes} bytes in {self._waited:.1f} s, below the minimum rate of"
                f" {self._floor / self._window:g} bytes/s (DLENGINE_MIN_RATE): a trickle is a stall"
            )
        self._waited, self._bytes = 0.0, 0


class HTTPStream:
    """An open HTTP response body (``body=False``: none to read).

    ``min_rate`` (bytes/s) over each ``window`` (the request's timeout) and
    ``max_size`` (bytes, offset included) bound what ``chunks`` accepts."""

    def __init__(
        self,
        response: urllib3.BaseHTTPResponse,
        info: ObjectInfo,
        offset: int,
        not_modified: bool,
        *,
        body: bool = True,
        min_rate: float = 0,
        window: float = 0,
        max_size: int | None = None,
    ) -> None:
        self._response = response
        self.info = info
        self.offset = offset
        self.not_modified = not_modified
        self._body = body and not not_modified
        self._ended = not_modified
        self._floor = MinimumRate(min_rate, window, info.key) if min_rate > 0 and window > 0 else None
        self._max_size = max_size

    def chunks(self, size: int) -> Iterator[bytes]:
        """The body as it arrives, at most ``size`` bytes at a time. Bytes
        received before a reset or a stall are handed over before the error,
        so the next attempt resumes exactly where this one stopped."""
        if not self._body:
            return
        position = self.offset
        try:
            while data := self._read(size):
                position += len(data)
                self._check_size(position)
                yield data
        except Exception as exc:
            raise translate(exc, self.info.key) from exc
        self._ended = True

    def _read(self, size: int) -> bytes:
        if self._floor is None:
            return self._response.read1(size)
        began = time.monotonic()
        data = self._response.read1(size)
        self._floor.add(time.monotonic() - began, len(data))
        return data

    def _check_size(self, position: int) -> None:
        """A body without a declared length is cut at the maximum size (one
        with a length is cut at that length by the HTTP parser)."""
        if self._max_size is not None and position > self._max_size:
            raise errors.ObjectTooLargeError(
                f"{self.info.key}: the body goes on past the maximum object size of {self._max_size} bytes"
                " (DLENGINE_MAX_OBJECT_SIZE); cut there"
            )

    def close(self) -> None:
        if self._ended:
            # a body read to its end, or none (304): mark the answer read, or
            # the next request on this pooled connection fails (ResponseNotReady)
            self._response.drain_conn()
        else:
            # the rest of the body may still arrive: the connection cannot
            # carry another request
            self._response.close()
        self._response.release_conn()


class HTTPSource:
    """Plain links. One instance per process: urllib3 pools are thread-safe.
    ``max_object_size`` and ``min_rate`` default to the settings."""

    def __init__(self, pool_size: int = 16, *, max_object_size: int | None = None, min_rate: int | None = None) -> None:
        self._pool = guarded_pool_manager(num_pools=64, maxsize=pool_size)
        self._timeouts: dict[float, urllib3.Timeout] = {}
        if max_object_size is None or min_rate is None:
            settings = config.load_settings()
            max_object_size = settings.max_object_size if max_object_size is None else max_object_size
            min_rate = settings.min_rate if min_rate is None else min_rate
        self.max_object_size = max_object_size
        self.min_rate = min_rate

    def stat(self, key: str, headers: Mapping[str, str] | None = None, timeout: float = 60.0) -> ObjectInfo:
        response = self._request("HEAD", key, dict(headers or {}), timeout)
        try:
            if response.status >= 400:
                raise status_error(key, response.status, response.headers, response.reason or "")
            if response.status >= 300:
                raise errors.RedirectError(f"{key}: HTTP {response.status}: a redirect that was not followed")
            return info_of(key, response.headers)
        finally:
            response.release_conn()

    def list(self, prefix: str = "", suffix: str = "") -> Iterator[ObjectInfo]:
        raise errors.PermanentError("plain HTTP sources cannot be listed")

    def open(self, request: Request) -> HTTPStream:
        headers = {**request.headers, **conditional_headers(request)}
        response = self._request("GET", request.key, headers, request.timeout)
        try:
            answer = interpret(
                request, response.status, response.headers, response.reason or "", max_size=self.max_object_size
            )
        except BaseException:
            response.close()  # an error answer's body is unread: the connection cannot be reused
            response.release_conn()
            raise
        return self._stream(request, response, answer)

    def _stream(self, request: Request, response: urllib3.BaseHTTPResponse, answer: Answer) -> HTTPStream:
        return HTTPStream(
            response, answer.info, answer.offset, answer.not_modified, body=answer.body,
            min_rate=self.min_rate, window=request.timeout, max_size=self.max_object_size,
        )  # fmt: skip

    def _request(self, method: str, url: str, headers: dict[str, str], timeout: float) -> urllib3.BaseHTTPResponse:
        """The answer to ``method url`` once redirects are followed: every
        hop's connection under the egress policy, the job's secret headers
        only to its own origin."""
        target, sent = url, headers
        for hops in range(redirects.MAX_REDIRECTS + 1):
            response = self._send(method, target, sent, timeout)
            try:
                hop = redirects.next_hop(target, response.status, response.headers.get("Location"), hops)
            except BaseException:
                _discard(response)
                raise
            if hop is None:
                return response
            _discard(response)
            target, sent = hop, redirects.headers_for(url, hop, headers)
        raise AssertionError("unreachable: next_hop refuses the 11th redirect")

    def _send(self, method: str, url: str, headers: dict[str, str], timeout: float) -> urllib3.BaseHTTPResponse:
        limits = self._timeouts.get(timeout)
        if limits is None:
            limits = self._timeouts.setdefault(timeout, urllib3.Timeout(connect=timeout, read=timeout))
        try:
            # urlopen, not request: no body or fields to encode; redirects are ours
            return self._pool.urlopen(
                method, url, headers={**_BASE_HEADERS, **headers}, preload_content=False, redirect=False,
                timeout=limits,
            )  # fmt: skip
        except errors.SourceDeniedError as exc:
            raise errors.SourceDeniedError(f"{url}: {exc}", code=exc.code) from None
        except Exception as exc:
            raise translate(exc, url) from exc


def _discard(response: urllib3.BaseHTTPResponse) -> None:
    """Let go of an answer whose body nobody reads (a redirect's): read a
    short one so its connection is reused, close a long or endless one."""
    length = str(response.headers.get("Content-Length", "")).strip()
    try:
        if length.isdigit() and int(length) <= _SMALL_BODY:
            response.drain_conn()
        else:
            response.close()
    except Exception:  # noqa: BLE001 - a broken connection is closed instead
        response.close()
    response.release_conn()


# -- connections under the egress policy ------------------------------------


def guarded_connection(
    address: tuple[str, int],
    timeout: Any = None,
    source_address: tuple[str, int] | None = None,
    socket_options: Any = None,
) -> socket.socket:
    """``socket.create_connection`` that resolves ``address`` once and
    checks each address with ``egress.check_address`` right before
    connecting to it: a refused address is skipped (as libcurl's open-socket
    hook does), and if every address was refused the denial is raised."""
    host, port = address
    host = host.strip("[]")
    if _is_address(host):  # refused even where its address family cannot be resolved
        egress.check_address(host)
    denied: errors.DlengineError | None = None
    failure: OSError | None = None
    for family, kind, proto, _, sockaddr in socket.getaddrinfo(host, port, allowed_gai_family(), socket.SOCK_STREAM):
        try:
            egress.check_address(str(sockaddr[0]))
        except errors.SourceDeniedError as exc:
            denied = errors.SourceDeniedError(f"host {host!r}: {exc}", code=exc.code)
            continue
        sock = socket.socket(family, kind, proto)
        try:
            for level, option, value in socket_options or ():
                sock.setsockopt(level, option, value)
            if isinstance(timeout, int | float):  # else urllib3's "default" sentinel
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            failure = exc
            sock.close()
    if failure is not None:
        raise failure
    if denied is not None:
        raise denied
    raise OSError(f"getaddrinfo returned no address for {host!r}")


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _new_conn(conn: HTTPConnection) -> socket.socket:
    """urllib3's ``HTTPConnection._new_conn`` through ``guarded_connection``."""
    try:
        return guarded_connection(
            (conn._dns_host, conn.port or 80),  # urllib3 resolves this name
            conn.timeout,
            source_address=conn.source_address,
            socket_options=conn.socket_options,
        )
    except socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    except TimeoutError as exc:
        message = f"Connection to {conn.host} timed out (connect timeout={conn.timeout})"
        raise ConnectTimeoutError(conn, message) from exc
    except OSError as exc:
        raise NewConnectionError(conn, f"Failed to establish a new connection: {exc}") from exc


class _GuardedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _new_conn(self)


class _GuardedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _new_conn(self)


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


def guarded_pool_manager(num_pools: int, maxsize: int) -> urllib3.PoolManager:
    """A urllib3 ``PoolManager`` (no retries, no redirects of its own)
    whose every connection opens through ``guarded_connection``."""
    pool = urllib3.PoolManager(num_pools=num_pools, maxsize=maxsize, block=False, retries=False)
    pool.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}
    return pool


# -- errors ------------------------------------------------------------------


def translate(exc: BaseException, url: str) -> errors.DlengineError:
    """urllib3's exceptions -> dlengine's error classes."""
    if isinstance(exc, errors.DlengineError):
        return exc
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if _caused_by(exc, ssl.SSLCertVerificationError, ssl.CertificateError):
        return errors.TLSError(f"{url}: TLS certificate verification failed: {_tls_reason(exc)}")
    if isinstance(exc, U3SSLError | ssl.SSLError):
        return errors.SourceConnectionError(f"{url}: TLS handshake failed: {exc}", code=errors.ErrorCode.TLS)
    if _caused_by(exc, ConnectionRefusedError):
        return errors.SourceRefusedError(f"{url}: connection refused")  # failed at once, as on the libcurl path
    if isinstance(exc, NameResolutionError):
        return errors.SourceConnectionError(f"{url}: cannot resolve host ({exc})")
    if isinstance(exc, U3Timeout | socket.timeout | TimeoutError):
        return errors.SourceTimeoutError(f"{url}: timeout ({exc})")
    if isinstance(exc, NewConnectionError | ProtocolError | ConnectionError | HTTPError | OSError):
        return errors.SourceConnectionError(f"{url}: {exc}")
    return errors.SourceConnectionError(f"{url}: {type(exc).__name__}: {exc}")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, its causes and contexts, and exceptions urllib3 keeps in its args."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        todo.extend(arg for arg in current.args if isinstance(arg, BaseException))


def _caused_by(exc: BaseException, *kinds: type[BaseException]) -> bool:
    return any(isinstance(e, kinds) for e in _chain(exc))


def _tls_reason(exc: BaseException) -> str:
    for current in _chain(exc):
        if isinstance(current, ssl.SSLCertVerificationError):
            return current.verify_message or str(current)
        if isinstance(current, ssl.CertificateError):
            return str(current)
    return str(exc)

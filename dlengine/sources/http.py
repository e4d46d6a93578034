"""HTTP(S) source: pooled keep-alive connections through urllib3."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator, Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import HTTPError, MaxRetryError, NewConnectionError, ProtocolError
from urllib3.exceptions import TimeoutError as U3Timeout

from dlengine import errors
from dlengine.sources import checksums
from dlengine.sources.base import ObjectInfo, Request

_BUSY = {408, 429, 500, 502, 503, 504}
_BASE_HEADERS = {"Accept-Encoding": "identity", "User-Agent": "dlengine"}


class HTTPStream:
    """An open HTTP response body (``body=False``: none to read)."""

    def __init__(
        self,
        response: urllib3.BaseHTTPResponse,
        info: ObjectInfo,
        offset: int,
        not_modified: bool,
        *,
        body: bool = True,
    ) -> None:
        self._response = response
        self.info = info
        self.offset = offset
        self.not_modified = not_modified
        self._body = body and not not_modified
        self._ended = not_modified

    def chunks(self, size: int) -> Iterator[bytes]:
        """The body as it arrives, at most ``size`` bytes at a time. Bytes
        received before a reset or a stall are handed over before the error,
        so the next attempt resumes exactly where this one stopped."""
        if not self._body:
            return
        try:
            while data := self._response.read1(size):
                yield data
        except Exception as exc:
            raise translate(exc, self.info.key) from exc
        self._ended = True

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
    """Plain links. One instance per process: urllib3 pools are thread-safe."""

    def __init__(self, pool_size: int = 16) -> None:
        self._pool = urllib3.PoolManager(num_pools=64, maxsize=pool_size, block=False, retries=False)
        self._safe_hosts: set[str] = set()
        self._timeouts: dict[float, urllib3.Timeout] = {}

    def stat(self, key: str, headers: Mapping[str, str] | None = None, timeout: float = 60.0) -> ObjectInfo:
        response = self._request("HEAD", key, dict(headers or {}), timeout)
        try:
            _raise_for_status(response, key)
            return _info(key, response, partial=False, offset=0)
        finally:
            response.release_conn()

    def list(self, prefix: str = "", suffix: str = "") -> Iterator[ObjectInfo]:
        raise errors.PermanentError("plain HTTP sources cannot be listed")

    def open(self, request: Request) -> HTTPStream:
        headers = {**request.headers, **conditional_headers(request)}
        response = self._request("GET", request.key, headers, request.timeout)
        try:
            return self._stream(request, response)
        except BaseException:
            response.close()  # an error answer's body is unread: the connection cannot be reused
            response.release_conn()
            raise

    def _stream(self, request: Request, response: urllib3.BaseHTTPResponse) -> HTTPStream:
        if response.status == 304:
            return HTTPStream(response, _info(request.key, response, partial=False, offset=0), 0, True)
        if response.status == 416 and request.offset > 0:
            if _kept_whole(response, request):
                info = _info(request.key, response, partial=True, offset=request.offset)
                return HTTPStream(response, info, request.offset, False, body=False)
            raise errors.SourceChangedError(f"{request.key}: range not satisfiable; the object changed")
        _raise_for_status(response, request.key)
        partial = response.status == 206
        offset = request.offset if partial else 0
        return HTTPStream(response, _info(request.key, response, partial=partial, offset=offset), offset, False)

    def _request(self, method: str, url: str, headers: dict[str, str], timeout: float) -> urllib3.BaseHTTPResponse:
        self._check_host(url)
        all_headers = {**_BASE_HEADERS, **headers}
        limits = self._timeouts.get(timeout)
        if limits is None:
            limits = self._timeouts.setdefault(timeout, urllib3.Timeout(connect=timeout, read=timeout))
        try:
            # urlopen, not request: no body or fields to encode, same redirects
            return self._pool.urlopen(
                method, url, headers=all_headers, preload_content=False, redirect=True, timeout=limits
            )
        except Exception as exc:
            raise translate(exc, url) from exc

    def _check_host(self, url: str) -> None:
        """Refuse link-local targets (cloud metadata services)."""
        host = urlsplit(url).hostname or ""
        if host in self._safe_hosts:
            return
        try:
            addrs = {ai[4][0] for ai in socket.getaddrinfo(host, None)}
        except OSError as exc:
            raise errors.SourceConnectionError(f"{url}: cannot resolve host {host!r}: {exc}") from None
        for addr in addrs:
            if ipaddress.ip_address(str(addr).split("%")[0]).is_link_local:
                raise errors.SourceDeniedError(f"{url}: refusing link-local address {addr}")
        self._safe_hosts.add(host)


def conditional_headers(request: Request) -> dict[str, str]:
    """Range + If-Range to resume, else If-None-Match / If-Modified-Since
    to skip an object already stored."""
    if request.offset > 0:
        headers = {"Range": f"bytes={request.offset}-"}
        if request.if_range:
            headers["If-Range"] = request.if_range
        return headers
    if request.if_none_match:
        return {"If-None-Match": request.if_none_match}
    if request.if_modified_since:
        return {"If-Modified-Since": request.if_modified_since}
    return {}


def translate(exc: BaseException, url: str) -> errors.DlengineError:
    """urllib3's exceptions -> dlengine's error classes."""
    if isinstance(exc, errors.DlengineError):
        return exc
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if isinstance(exc, U3Timeout | socket.timeout | TimeoutError):
        return errors.SourceTimeoutError(f"{url}: timed out ({exc})")
    if isinstance(exc, NewConnectionError | ProtocolError | ConnectionError | HTTPError | OSError):
        return errors.SourceConnectionError(f"{url}: {exc}")
    return errors.SourceConnectionError(f"{url}: {type(exc).__name__}: {exc}")


def _raise_for_status(response: urllib3.BaseHTTPResponse, url: str) -> None:
    status = response.status
    if status < 400:
        return
    reason = f"{url}: HTTP {status} {response.reason or ''}".rstrip()
    if status in _BUSY or status >= 500:
        raise errors.ServerBusyError(reason, retry_after=parse_retry_after(response.headers.get("Retry-After")))
    if status in (404, 410):
        raise errors.SourceNotFoundError(reason)
    if status in (401, 403):
        raise errors.SourceDeniedError(reason)
    raise errors.SourceHTTPError(reason)


def _kept_whole(response: urllib3.BaseHTTPResponse, request: Request) -> bool:
    """A 416 to ``bytes=N-`` from the version we hold, whose size is N: the
    kept bytes are the whole object (an attempt ended just before its rename)."""
    total = str(response.headers.get("Content-Range", "")).rpartition("/")[2]
    validators = (response.headers.get("ETag"), response.headers.get("Last-Modified"))
    return request.if_range is not None and request.if_range in validators and total == str(request.offset)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def _info(url: str, response: urllib3.BaseHTTPResponse, *, partial: bool, offset: int) -> ObjectInfo:
    headers: Any = response.headers
    return ObjectInfo(
        key=url,
        size=_total_size(headers, partial, offset),
        etag=headers.get("ETag"),
        last_modified=headers.get("Last-Modified"),
        checksums=checksums.from_headers(headers, partial=partial),
    )


def _total_size(headers: Any, partial: bool, offset: int) -> int | None:
    """Whole-object size: from Content-Range on a 206, else Content-Length."""
    if partial:
        total = str(headers.get("Content-Range", "")).rpartition("/")[2]
        if total.isdigit():
            return int(total)
    length = headers.get("Content-Length")
    if length is None or not str(length).isdigit():
        return None
    return int(length) + (offset if partial else 0)

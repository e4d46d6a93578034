"""HTTP(S) downloads through libcurl's multi interface: one event loop per
worker process drives many transfers over reused connections, with no
thread per download.

The loop runs on its own thread and never touches SQLite: the worker's
ledger thread hands it tasks (``submit``) and records what it reports.
Each transfer is one ``transfer.Receiver`` fed from curl's write callback,
so the one-object protocol (resume point, conditions, hashing, verify,
install) is the same as on the pulled path of the SDK sources.

What a server sends is checked before a byte is written: the status and
headers of the final answer (redirects are followed by curl, at most
``MAX_REDIRECTS``, http/https only, each hop's address checked by the
egress policy on the socket actually opened) go through the same
interpretation as every HTTP answer.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import queue
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pycurl

from dlengine import errors, transfer
from dlengine.ledger.models import Task
from dlengine.sources import http
from dlengine.sources.base import ObjectInfo, Request
from dlengine.supervisor import work

log = logging.getLogger("dlengine.curl")

MAX_REDIRECTS = 10
BUFFER_SIZE = 256 << 10  # bytes per write callback at most
MIN_RATE = 512  # bytes/s: slower than this over a whole timeout window is a stall
SCAN_INTERVAL = 0.25  # seconds between scans for aborted and stalled transfers
_PROTOCOLS = pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS
_BASE_HEADERS = [f"{k}: {v}" for k, v in http._BASE_HEADERS.items()]

Report = Callable[[work.Result, bool], None]
"""Where outcomes go: (result, whether the work file may have a .meta)."""


def eligible(link: str) -> bool:
    """Whether the loop can serve a link (plain HTTP(S))."""
    return link[:8].lower().startswith(("http://", "https://"))


class _Headers(dict[str, str]):
    """Response headers by lower-case name (lookups in any case)."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


class _Answer:
    """The final response's status line and headers, as ``http`` reads them."""

    __slots__ = ("headers", "reason", "status")

    def __init__(self) -> None:
        self.status = 0
        self.reason = ""
        self.headers = _Headers()


@dataclass(eq=False)
class _Transfer:
    task: Task
    ctx: work.Context
    receiver: transfer.Receiver
    handle: Any
    answer: _Answer = field(default_factory=_Answer)
    error: BaseException | None = None
    begun: bool = False
    held: work.Result | None = None  # nothing to receive (not modified)
    timeout: float = 60.0
    received: int = 0  # bytes of headers and body so far
    mark_bytes: int = 0  # ``received`` when the current timeout window opened
    mark_at: float = field(default_factory=time.monotonic)

    def stalled(self, now: float) -> bool:
        """Fewer than MIN_RATE bytes/s over a whole timeout window: a stall
        (a trickle of a byte now and then too), checked once per window."""
        if now - self.mark_at < self.timeout:
            return False
        if self.received - self.mark_bytes < max(1.0, MIN_RATE * self.timeout):
            return True
        self.mark_at, self.mark_bytes = now, self.received
        return False

    def on_header(self, line: bytes) -> None:
        self.received += len(line)
        text = line.decode("iso-8859-1").rstrip("\r\n")
        if text.startswith("HTTP/"):  # a new answer (after a redirect or a 100)
            self.answer = _Answer()
            _, _, rest = text.partition(" ")
            code, _, reason = rest.partition(" ")
            self.answer.status = int(code) if code.isdigit() else 0
            self.answer.reason = reason
        elif ":" in text:
            name, _, value = text.partition(":")
            self.answer.headers[name.strip().lower()] = value.strip()

    def on_body(self, data: bytes) -> int | None:
        self.received += len(data)
        try:
            if not self.begun and not self.begin():
                return 0  # nothing to receive: stop (the held outcome stands)
            self.receiver.write(data)
        except BaseException as exc:  # noqa: BLE001 - reported when curl returns
            self.error = exc
            return 0  # aborts the transfer with CURLE_WRITE_ERROR
        return None

    def begin(self) -> bool:
        """Interpret the final answer once; False if it has no body to keep."""
        self.begun = True
        info, offset, not_modified = interpret(self.receiver.request, self.answer)
        self.held = self.receiver.begin(info, offset, not_modified)
        return self.held is None


def interpret(request: Request, answer_: _Answer) -> tuple[ObjectInfo, int, bool]:
    """(info, offset where the body starts, not modified) of a final answer,
    or the error it means."""
    key = request.key
    answer: Any = answer_  # read as a urllib3 response is
    if answer.status == 304:
        return http._info(key, answer, partial=False, offset=0), 0, True
    if answer.status == 416 and request.offset > 0:
        if http._kept_whole(answer, request):
            return http._info(key, answer, partial=True, offset=request.offset), request.offset, False
        raise errors.SourceChangedError(f"{key}: range not satisfiable; the object changed")
    if 300 <= answer.status < 400:
        raise errors.RedirectError(f"{key}: HTTP {answer.status} redirect not followed (more than {MAX_REDIRECTS}?)")
    http._raise_for_status(answer, key)
    partial = answer.status == 206
    offset = request.offset if partial else 0
    return http._info(key, answer, partial=partial, offset=offset), offset, False


def check_address(ip: str) -> None:
    """The egress policy on an address about to be connected."""
    addr = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(addr, "ipv4_mapped", None)
    if addr.is_link_local or (mapped is not None and mapped.is_link_local):
        raise errors.SourceDeniedError(f"refusing to connect to link-local address {ip}")


_CURL_ERRORS: dict[int, tuple[type[errors.DlengineError], errors.ErrorCode | None]] = {
    pycurl.E_COULDNT_RESOLVE_HOST: (errors.SourceConnectionError, None),
    pycurl.E_COULDNT_CONNECT: (errors.SourceConnectionError, errors.ErrorCode.REFUSED),
    pycurl.E_OPERATION_TIMEDOUT: (errors.SourceTimeoutError, None),
    pycurl.E_TOO_MANY_REDIRECTS: (errors.RedirectError, None),
    pycurl.E_UNSUPPORTED_PROTOCOL: (errors.RedirectError, None),
    pycurl.E_PEER_FAILED_VERIFICATION: (errors.TLSError, None),
    pycurl.E_SSL_CONNECT_ERROR: (errors.TLSError, None),
    pycurl.E_SSL_CACERT_BADFILE: (errors.TLSError, None),
    pycurl.E_FILESIZE_EXCEEDED: (errors.SizeMismatchError, None),
}


def curl_error(code: int, message: str, url: str) -> errors.DlengineError:
    """libcurl's error -> dlengine's error class (resets, partial bodies and
    the like are transient: the next attempt resumes)."""
    kind, ecode = _CURL_ERRORS.get(code, (errors.SourceConnectionError, None))
    if code == pycurl.E_COULDNT_CONNECT and "refused" not in message.lower():
        message = f"connection refused or unreachable: {message}"
    return kind(f"{url}: {message}", code=ecode) if ecode else kind(f"{url}: {message}")


class CurlLoop:
    """Many concurrent downloads on one thread (``run``)."""

    def __init__(self, report: Report) -> None:
        self._report = report
        self._multi = pycurl.CurlMulti()
        self._free: list[Any] = []
        self._active: dict[Any, _Transfer] = {}
        self._inbox: queue.SimpleQueue[tuple[Task, work.Context] | None] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stopped = False

    def submit(self, task: Task, ctx: work.Context) -> None:
        """Start ``task`` (from any thread); its result goes to ``report``."""
        self._inbox.put((task, ctx))
        self._wake()

    def stop(self) -> None:
        self._inbox.put(None)
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # already awake

    def run(self) -> None:
        """Until ``stop``: start submitted transfers, drive them, report."""
        next_scan = 0.0
        try:
            while not self._stopped:
                self._take_inbox()
                self._perform()
                now = time.monotonic()
                if now >= next_scan:
                    self._scan(now)
                    next_scan = now + SCAN_INTERVAL
                self._wait(next_scan - now)
        finally:
            for t in list(self._active.values()):
                self._fail(t, transfer.Aborted())
            self._multi.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _take_inbox(self) -> None:
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if item is None:
                self._stopped = True
                return
            self._start(*item)

    def _perform(self) -> None:
        while True:
            status, _ = self._multi.perform()
            if status != pycurl.E_CALL_MULTI_PERFORM:
                break
        while True:
            queued, ok, failed = self._multi.info_read()
            for handle in ok:
                self._finish(self._release(handle))
            for handle, code, message in failed:
                t = self._release(handle)
                if t.error is None and t.held is None:
                    t.error = curl_error(code, message, t.task.link)
                self._finish(t)
            if not queued:
                return

    def _wait(self, limit: float) -> None:
        timeout_ms = self._multi.timeout()
        timeout = limit if timeout_ms < 0 else min(limit, timeout_ms / 1000)
        if timeout <= 0:
            return
        readers, writers, errs = self._multi.fdset()
        ready, _, _ = select.select([*readers, self._wake_r], writers, errs, timeout)
        if self._wake_r in ready:
            try:
                os.read(self._wake_r, 4096)
            except BlockingIOError:
                pass

    def _scan(self, now: float) -> None:
        """End transfers aborted while nothing arrives (the write callback
        sees the others) and transfers that stalled."""
        for handle, t in list(self._active.items()):
            cancel = t.ctx.cancel
            if cancel is not None and cancel.is_set():
                t.error = transfer.Aborted()
            elif t.stalled(now):
                rate = f"{MIN_RATE} bytes/s"
                t.error = errors.SourceTimeoutError(f"{t.task.link}: timed out (less than {rate} for {t.timeout:g} s)")
            else:
                continue
            self._release(handle)
            self._finish(t)

    def _start(self, task: Task, ctx: work.Context) -> None:
        try:
            job = work.transfer_job(task, ctx, None, task.link, None)
            receiver = transfer.Receiver(task, job)
        except BaseException as exc:  # noqa: BLE001 - errors are outcomes
            self._report((work.failure(task, exc, ctx), None), True)
            return
        handle = self._free.pop() if self._free else pycurl.Curl()
        t = _Transfer(task, ctx, receiver, handle, timeout=job.timeout)
        _configure(handle, t, job.timeout)
        self._active[handle] = t
        self._multi.add_handle(handle)

    def _release(self, handle: Any) -> _Transfer:
        t = self._active.pop(handle)
        try:
            self._multi.remove_handle(handle)
        except pycurl.error:
            pass  # already removed (cancelled)
        handle.reset()
        self._free.append(handle)
        return t

    def _finish(self, t: _Transfer) -> None:
        if t.error is not None:
            self._fail(t, t.error)
            return
        try:
            if t.held is None and not t.begun:
                t.begin()  # an answer without a body: 304, 416 for kept bytes, empty
            result = t.held if t.held is not None else t.receiver.end()
        except BaseException as exc:  # noqa: BLE001 - errors are outcomes
            self._fail(t, exc)
            return
        self._report(result, t.receiver.sidecar)

    def _fail(self, t: _Transfer, exc: BaseException) -> None:
        t.receiver.close()
        self._report((work.failure(t.task, exc, t.ctx), None), True)


def _configure(handle: Any, t: _Transfer, timeout: float) -> None:
    request = t.receiver.request
    headers = [*_BASE_HEADERS, *(f"{k}: {v}" for k, v in request.headers.items())]
    headers += [f"{k}: {v}" for k, v in http.conditional_headers(request).items()]
    setopt = handle.setopt
    setopt(pycurl.URL, request.key)
    setopt(pycurl.HTTPHEADER, headers)
    setopt(pycurl.NOSIGNAL, 1)
    setopt(pycurl.FOLLOWLOCATION, 1)
    setopt(pycurl.MAXREDIRS, MAX_REDIRECTS)
    setopt(pycurl.PROTOCOLS, _PROTOCOLS)
    setopt(pycurl.REDIR_PROTOCOLS, _PROTOCOLS)
    setopt(pycurl.CONNECTTIMEOUT_MS, max(1, int(timeout * 1000)))
    setopt(pycurl.BUFFERSIZE, BUFFER_SIZE)
    setopt(pycurl.HEADERFUNCTION, t.on_header)
    setopt(pycurl.WRITEFUNCTION, t.on_body)
    setopt(pycurl.OPENSOCKETFUNCTION, functools.partial(_open_socket, t))


def _open_socket(t: _Transfer, purpose: int, address: Any) -> Any:
    """Every connection, redirects included, on the address actually used."""
    try:
        check_address(str(address.addr[0]))
    except errors.DlengineError as exc:
        t.error = exc
        return pycurl.SOCKET_BAD
    return socket.socket(address.family, address.socktype, address.protocol)

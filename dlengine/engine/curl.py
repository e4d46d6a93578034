"""HTTP(S) downloads through libcurl's multi interface: one event loop per
worker process drives many transfers over reused connections, with no
thread per download.

The loop runs on its own thread and never touches SQLite: the worker's
ledger thread hands it tasks (``submit``) and records what it reports.
Each transfer is one ``transfer.Receiver`` fed from curl's write callback,
so the one-object protocol (resume point, conditions, hashing, verify,
install) is the same as on the pulled path of the SDK sources.

What a server sends is checked before a byte is written: the status and
headers of the final answer (redirects are followed here, at most
``redirects.MAX_REDIRECTS``, http/https only, secret headers to the job's
origin only, each hop's address checked by the egress policy on the
socket actually opened) go through the same
interpretation as every HTTP answer (``sources.answer``).
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import logging
import queue
import select
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pycurl

from dlengine import errors, transfer
from dlengine.ledger.models import Task
from dlengine.net import egress, redirects, tls
from dlengine.sources import answer as answers
from dlengine.sources.base import ObjectInfo, Request, SignedGet
from dlengine.supervisor import work
from dlengine.supervisor.wake import Wake

log = logging.getLogger("dlengine.curl")

BUFFER_SIZE = 256 << 10  # libcurl's receive buffer (its write callbacks still get at most 16 KiB each)
SCAN_INTERVAL = 0.25  # seconds between scans for aborted and stalled transfers
SEGMENTS = 8  # segments (connections) per object at most; none smaller than a quarter of the threshold
STEAL_LEAST = 1 << 20  # bytes each half of a segment split in two keeps at least (``CurlLoop._steal``)
STREAMS = SEGMENTS  # the streams large objects in flight share in one loop (``segments_now``)
GROW_WINDOW = 1.0  # seconds an object's segments run between two looks at their rate (``CurlLoop._grow``)
GROWN_MOST = 16  # connections of a loop past which no object grows (``CurlLoop._grow``)
GROW_KEEPS = 0.75  # share of its rate a connection must keep when more are added, for more to come
_BUSY = frozenset({429, 503})  # a server turning away one connection more than it takes
_PROTOCOLS = pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS
# curl errors that, on a reused connection, mean leftovers of an earlier answer
_STALE_REPLY = frozenset({getattr(pycurl, "E_WEIRD_SERVER_REPLY", 8), pycurl.E_GOT_NOTHING})
_BASE_HEADERS = ["Accept-Encoding: identity", "User-Agent: dlengine"]
# Connections being opened at once at most (opened, no answer yet), as a
# browser opens 6 a host: a simple server's listen queue is that deep
# (Python's http.server and ThreadingHTTPServer: 5), and connections opened
# faster than it accepts them are lost in it: the kernel drops their SYN
# (sent again after 1 s, then 2, 4, ...) or their handshake's last ACK (the
# request then resent with backoff). 64 objects in flight opened together
# took 62 s for 2,000 x 10 KiB from `python3 -m http.server` (bench/RESULTS.md,
# 2026-12-08). On connections a server keeps open, the loop's connections
# grow by one an answer (TCP's slow start); one that closes after each
# answer gets CONNECTING objects in flight.
CONNECTING = 6
# A request on a new connection with no byte of an answer after REASK_AFTER,
# while requests sent REASK_LATER or more after it have their answers, and
# its server has not taken it (the connection not established, or the
# request's bytes not acknowledged: ``_unheard``): lost in a full listen
# queue. It is asked again (at most REASKS times), not left to TCP's
# backoff (up to a minute). A server that took a request and is slow to
# answer it is never asked twice.
REASK_AFTER = 1.0
REASK_LATER = 4
REASKS = 3
# A new connection refused (or reset while it connects), or closed before a
# byte of an answer, while its server serves others (answered within
# SERVING_WITHIN seconds, or holds an established connection of the loop
# now: ``CurlLoop._serving``): it takes no more connections from here (a
# cap per client: a firewall's connlimit, a proxy's maxconn). Not "nothing listens" (a refusal fails an object for
# good): from then on the loop keeps as many objects in flight to that
# origin as it had (``_caps``; one fewer at each refusal after that), and
# the object waits for one of them, not counted as an attempt; a segment
# waits for one of its object's connections.
_SHUT_OUT = frozenset({pycurl.E_COULDNT_CONNECT, pycurl.E_RECV_ERROR, pycurl.E_SEND_ERROR, pycurl.E_GOT_NOTHING})
SERVING_WITHIN = 2.0
_TCP_ESTABLISHED = 1  # tcp_info.tcpi_state
_TCP_INFO_SIZE = 32  # bytes of struct tcp_info read: through tcpi_unacked (bytes 24-27)

Report = Callable[[work.Result, bool], None]
"""Where outcomes go: (result, whether the work file may have a .meta)."""
ReportMany = Callable[[list[tuple[work.Result, bool]]], None]
"""The same, the outcomes of one round of the loop at a time."""
_Submitted = tuple[Task, work.Context, "SignedGet | None", "Route | None"]
ENDING_WAIT = 60.0  # seconds a stopping loop waits for the ends still running on their threads


@dataclass(eq=False)
class _Ended:
    """An object's end (verify, install) done on a thread: its outcome, or
    the error it raised, for the loop to report."""

    transfer: _Transfer
    got: work.Result | BaseException
    sidecar: bool


def eligible(link: str) -> bool:
    """Whether the loop can serve a link (plain HTTP(S))."""
    return link[:8].lower().startswith(("http://", "https://"))


class Route(Protocol):
    """How the loop fetches an object whose answers need its source to read
    them (``hf://``: a redirect to a CDN carries the file's identity), built
    per task by the source (``sources.hfroute``): the first request's URL
    and headers (secret headers go to that URL's origin only), the request
    each redirect leads to, and what the final answer means. Such an object
    is fetched in one stream, never in segments."""

    url: str
    headers: dict[str, str]

    def redirected(
        self, request: Request, status: int, headers: Mapping[str, str], target: str
    ) -> Request | tuple[ObjectInfo, int, bool]:
        """The request to send to ``target``, or (info, offset, not
        modified) when there is nothing more to ask for."""
        ...

    def interpret(
        self, request: Request, status: int, headers: Mapping[str, str], reason: str, max_size: int | None
    ) -> tuple[ObjectInfo, int, bool]: ...

    def reword(self, exc: BaseException) -> BaseException:
        """A failure as the ledger may record it (no signed URL, no token)."""
        ...

    def segment_validator(self, headers: Mapping[str, str]) -> str | None:
        """Whether the final answer (its ``headers``) may come in ranged
        segments: the validator that guards them ("": none, its URL names
        the bytes and a checksum the route knows verifies them), or None
        to fetch it in one stream."""
        ...

    def names(self, validator: str) -> bool:
        """Whether the source, by now, named the version ``validator``
        stands for (kept bytes written under it belong to the bytes its
        last redirect leads to)."""
        ...


class _Answer:
    """The final response's status line and headers (lower-case names)."""

    __slots__ = ("headers", "reason", "status")

    def __init__(self, status: int = 0, reason: str = "", headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.reason = reason
        self.headers: dict[str, str] = headers if headers is not None else {}


@dataclass(eq=False)
class _Transfer:
    """One request of the loop: its object, receiver, easy handle and answer."""

    task: Task
    ctx: work.Context
    receiver: transfer.Receiver
    handle: Any
    answer: _Answer = field(default_factory=_Answer)  # read from ``lines`` by ``parse``
    lines: list[bytes] = field(default_factory=list)  # raw header lines of this request
    error: BaseException | None = None
    begun: bool = False
    held: work.Result | None = None  # nothing to receive (not modified)
    timeout: float = 60.0
    received: int = 0  # bytes of the body so far (``stalled`` adds those of the header lines)
    mark_bytes: int = 0  # ``received`` when the current timeout window opened
    mark_at: float = field(default_factory=time.monotonic)
    loop: CurlLoop | None = None
    group: _Group | None = None  # the segments of the object, when ranged
    segment: int = -1  # which of them this transfer receives
    cut: bool = False  # stopped on purpose at the end of its segment
    shortened: bool = False  # its segment's end moved before the end it asked for (``CurlLoop._steal``)
    url: str = ""  # where this request goes (the link, or a redirect's target)
    hops: int = 0  # redirects followed
    fresh: bool = False  # asked again on a new connection after garbage on a reused one
    redirect: str | None = None  # the next hop, when the answer was a redirect
    ranged: tuple[int, int] | None = None  # the range of a segment request
    min_rate: int = 0  # bytes/s over a timeout window (DLENGINE_MIN_RATE)
    max_size: int | None = None  # bytes (DLENGINE_MAX_OBJECT_SIZE)
    signed: SignedGet | None = None  # a cloud object's GET (its URL is a secret)
    route: Route | None = None  # a source's plan (hf://), else the link itself is asked for
    hop: Request | None = None  # the request of this hop, when a route made it
    # a large object of known size whose first request asks for its first
    # segment only, bytes [0, opening) (0: for the whole object, the answer
    # then cut at its segment's end: ``CurlLoop.opening``)
    opening: int = 0
    seq: int = 0  # the loop's number of this request (``CurlLoop._add``)
    sent_at: float = 0.0  # when it was added (time.monotonic)
    opened: bool = False  # it opened a connection of its own (``_open_socket``)
    unanswered: bool = False  # counted in ``CurlLoop._connecting`` (a connection opened for it, no answer yet)
    reasks: int = 0  # asked again after nothing came on a new connection (``CurlLoop._stuck``)
    shut_out: bool = False  # its new connection refused by a server that serves others (``CurlLoop._capped``)
    origin: str = ""  # ``url``'s scheme://host:port (``CurlLoop._add``)
    # the socket it opened (libcurl holds a duplicate), closed at its
    # release: its TCP state can be read while it connects (``_tcp_state``)
    sock: socket.socket | None = None

    @property
    def request(self) -> Request:
        """What this hop asks for: its conditions, headers and answer's key."""
        return self.hop or self.receiver.request

    @property
    def where(self) -> str:
        """What messages name: the request's URL, or a cloud object's link
        (a signed URL carries its credential)."""
        return self.task.link if self.signed is not None or self.route is not None else self.url

    def stalled(self, now: float) -> bool:
        """Fewer than ``min_rate`` bytes/s over a whole timeout window: a
        stall (a trickle of a byte now and then too), checked once per window."""
        if now - self.mark_at < self.timeout:
            return False
        received = self.received + sum(map(len, self.lines))  # (header lines go straight to the list)
        if received - self.mark_bytes < max(1.0, self.min_rate * self.timeout):
            return True
        self.mark_at, self.mark_bytes = now, received
        return False

    def rewind(self) -> None:
        """Nothing of an answer so far: it is asked (again)."""
        self.answer, self.lines, self.begun = _Answer(), [], False

    def parse(self) -> None:
        """The last answer of the header lines received (after a 100)."""
        self.answer = _Answer(*answers.parse_header_lines(self.lines))

    def on_body(self, data: bytes) -> int | None:
        self.received += len(data)
        try:
            if not self.begun and not self.begin():
                return 0  # nothing to receive: stop (the held outcome stands)
            if self.segment >= 0:
                if self.receiver.write_at(self.segment, data) and (self.answer.status == 200 or self.shortened):
                    self.cut = True
                    return 0  # a whole-object answer, or a shortened segment, reached its end: stop it
            else:
                self.receiver.write(data)  # (which cuts a body past max_size)
        except BaseException as exc:  # noqa: BLE001 - reported when curl returns
            self.error = exc
            return 0  # aborts the transfer with CURLE_WRITE_ERROR
        return None

    def begin(self) -> bool:
        """Interpret the final answer once; False if it has no body to keep."""
        self.begun = True
        self.parse()
        if self.loop is not None:
            self.loop.answered(self)
        location = self.answer.headers.get("location")
        self.redirect = redirects.next_hop(self.url, self.answer.status, location, self.hops)
        if self.redirect is not None:
            if self.route is not None:
                self._rerouted(self.route, self.redirect)
            return False  # followed once this answer is over
        if self.group is not None:
            self.group.check(self.segment, self.answer)
            return True
        if self.opening and self.answer.status in (206, 416):
            return self._opened()
        if self.opening and self.answer.status in (200, 203) and self.loop is not None:
            self.loop.ranges_ignored(self.task.link)  # (the whole object came: in one stream, as the next ones)
        if self.route is not None:
            answer = self.answer
            info, offset, not_modified = self.route.interpret(
                self.request, answer.status, answer.headers, answer.reason, self.max_size
            )
        else:
            info, offset, not_modified = interpret(self.receiver.request, self.answer, self.max_size)
        if self.signed is not None:
            info = self.signed.refine(info, self.answer.headers)
        loop = self.loop
        bounds = None
        validator = None if self.route is None else self.route.segment_validator(self.answer.headers)
        whole = offset or not_modified or (self.route is not None and validator is None)
        if loop is not None and not whole and loop.large(info.size) and loop.may_segment(self.task.link):
            bounds = segment_bounds(
                self.task, info, self.answer, loop.segment_threshold, loop.segments_now(), validator
            )
        if bounds and loop is not None:
            self.receiver.begin_segments(info, bounds)
            loop.segmented(self, (info.etag or "") if validator is None else validator)
            return True
        self.held = self.receiver.begin(info, offset, not_modified)
        return self.held is None

    def _opened(self) -> bool:
        """The 206 (or 416) to a first request for bytes [0, opening): it
        goes on as segment 0 and the other segments start now, each guarded
        by its ETag; an object no larger than that (it changed since its
        listing) came whole in it."""
        answer, loop = self.answer, self.loop
        assert loop is not None
        if answer.status == 416:  # (no byte at all now: the next attempt asks for the whole object)
            raise errors.SourceChangedError(f"{self.where}: range not satisfiable: the object changed since listed")
        request = self.receiver.request
        span = answers.content_range(answer.headers.get("content-range"))
        if span is None or span[0] != 0 or span[2] is None or span[1] != min(self.opening, span[2]) - 1:
            got = answer.headers.get("content-range")
            raise errors.SourceChangedError(f"{self.where}: HTTP 206 with range {got!r} to bytes=0-{self.opening - 1}")
        info = answers.info_of(request.key, answer.headers, partial=True)
        answers.check_size(request.key, info.size, self.max_size)
        if self.signed is not None:
            info = self.signed.refine(info, answer.headers)
        size, etag = span[2], info.etag or ""
        if size <= self.opening:
            self.held = self.receiver.begin(info, 0, False)
            return self.held is None
        if not etag or etag.startswith("W/"):  # (nothing to guard the other segments by)
            loop.ranges_ignored(self.task.link)
            raise RangesIgnored(f"{self.task.link}: ranged answers carry no strong ETag; fetching it whole")
        self.receiver.begin_segments(info, opened_bounds(self.opening, size))
        loop.segmented(self, etag)
        return True

    def _rerouted(self, route: Route, target: str) -> None:
        """A redirect on a route: the next hop's request, or the outcome
        when the route has nothing more to ask for."""
        got = route.redirected(self.request, self.answer.status, self.answer.headers, target)
        if isinstance(got, Request):
            self.hop = got
            return
        self.redirect = None
        info, offset, not_modified = got
        self.held = self.receiver.begin(info, offset, not_modified) or self.receiver.end()


def segment_bounds(
    task: Task,
    info: ObjectInfo,
    answer: _Answer,
    threshold: int,
    most: int = SEGMENTS,
    validator: str | None = None,
) -> list[tuple[int, int]] | None:
    """How to split an object into ranged segments (at most ``most``), or
    None to fetch it in one stream: it must be large, the server must
    accept ranges, and the answer's own ETag must be strong (each segment
    is guarded by it) and be the object's (what the segment map records).
    A cloud answer's ``info`` can carry its listing's ETag where the answer
    has none (GCS's emulator): every segment's 206, compared with it, would
    then be "changed", attempt after attempt. ``validator``: a route's own
    (``Route.segment_validator``: an LFS file's CDN answer is not what the
    Hub recorded it as), instead of the object's ETag. A job with a
    connection limit keeps one connection per object, so the limit holds."""
    size = info.size or 0
    if size < threshold or task.connections:
        return None
    if validator is None:
        etag = info.etag or ""
        if not etag or etag.startswith("W/") or answer.headers.get("etag") != etag:
            return None
    if answer.status != 200 or answer.headers.get("accept-ranges", "").lower() != "bytes":
        return None
    bounds = split(size, threshold, most)
    return bounds if len(bounds) > 1 else None


def grown(members: int, per_connection: float, before: float, room: int) -> int:
    """How many connections to add to an object's ``members`` segments
    after a window in which each made ``per_connection`` bytes/s
    (``before``: in the window before, 0 for the first): half as many again
    (``room`` at most); -1 (no more, ever) when the last ones added cost
    each connection more than a quarter of its rate: then it was the link
    (or this box) that limited the object, not each connection."""
    if before and per_connection < GROW_KEEPS * before:
        return -1
    return max(0, min(max(1, members // 2), room))


def split(size: int, threshold: int, most: int = SEGMENTS) -> list[tuple[int, int]]:
    """``size`` bytes as (start, end) segments of one size, at most
    ``most`` (and ``SEGMENTS``), none smaller than a quarter of the threshold."""
    count = max(1, min(SEGMENTS, most, size // max(1, threshold // 4)))
    step = -(-size // count)
    return [(start, min(start + step, size)) for start in range(0, size, step)]


def opened_bounds(opening: int, size: int) -> list[tuple[int, int]]:
    """The segments of an object of ``size`` bytes whose first one,
    [0, opening), was asked for by its first request: the rest in segments
    of about that size (as many as ``split`` made of the listed size, if the
    size is still the listed one), at most ``SEGMENTS`` in all."""
    rest = size - opening
    count = max(1, min(SEGMENTS - 1, -(-rest // opening)))
    step = -(-rest // count)
    return [(0, opening), *((start, min(start + step, size)) for start in range(opening, size, step))]


class RangesIgnored(errors.TransientError):
    """A server that announced ranges answered one with the whole object,
    or with no ETag to tell its version by: the next attempt fetches it in
    one stream."""

    code = errors.ErrorCode.HTTP
    restart = True


class LinkExpired(errors.TransientError):
    """A route's CDN refused a segment after it had served the file: its
    URL is signed and expires (a segment split off late in a long
    download asks it anew), not a file denied. The next attempt asks the
    source for a new URL and resumes the segments kept."""

    code = errors.ErrorCode.HTTP


_EXPIRED = frozenset({401, 403, 410})  # what a CDN answers to a signed URL past its expiry


@dataclass(eq=False)
class _Group:
    """The ranged segments of one object in flight: every answer must be a
    206 for its range of the very version (ETag) the first answer named;
    the object is done when every segment is complete, and fails (keeping
    the segments' progress for the next attempt) when one fails."""

    first: _Transfer
    validator: str  # "" (vouched): segments are checked by their ranges, the bytes by the route's checksum
    size: int
    members: set[_Transfer] = field(default_factory=set)
    error: BaseException | None = None
    # segments the server turned away (429, 503) while others ran: each
    # waits for a connection of the group to end (``CurlLoop._steal``)
    waiting: list[int] = field(default_factory=list)
    turned_away: BaseException | None = None  # the last such answer's error
    # growth (``CurlLoop._grow``): the window the rate is measured over
    mark_at: float = field(default_factory=time.monotonic)
    mark_bytes: int = 0  # the receiver's ``written`` when the window opened
    width: int = 0  # connections the group had then (0: as many as now)
    per_connection: float = 0.0  # bytes/s a connection made in the window before (0: none yet)
    growing: bool = True

    @property
    def vouched(self) -> bool:
        """A route's segments (its CDN's: the URL names the bytes and the
        route's checksum verifies them, ``Route.segment_validator``)."""
        return self.first.route is not None

    def check(self, index: int, answer: _Answer) -> None:
        segments = self.first.receiver.segments
        assert segments is not None
        start = segments[index][1]
        link = self.first.task.link
        if answer.status == 200 and (answer.headers.get("etag") == self.validator or not self.validator):
            raise RangesIgnored(f"{link}: the server ignores ranges; fetching it whole")
        if answer.status == 200:
            raise errors.SourceChangedError(f"{link}: the object changed (a ranged request got it whole)")
        if answer.status != 206:
            if self.vouched and answer.status in _EXPIRED:
                raise LinkExpired(
                    f"{link}: HTTP {answer.status} from the CDN to a ranged request: its signed URL expired;"
                    " the next attempt asks for a new one and goes on with the segments kept"
                )
            interpret(self.first.receiver.request, answer, None)  # the error it means
            raise errors.SourceHTTPError(f"{link}: HTTP {answer.status} to a ranged request")
        got = answer.headers.get("content-range", "")
        if not got.startswith(f"bytes {start}-") or not got.endswith(f"/{self.size}"):
            raise errors.SourceChangedError(f"{link}: range {got!r} is not the one asked for (from {start})")
        etag = answer.headers.get("etag")
        if self.vouched and not self.validator:
            return  # (no ETag to compare: the route's checksum verifies the whole)
        if etag is None:  # (unverifiable, not changed: failing it as changed would fail every attempt)
            raise RangesIgnored(f"{link}: the server's ranged answers carry no ETag; fetching it whole")
        if etag != self.validator:
            raise errors.SourceChangedError(f"{link}: the object changed during the download (ETag)")


def interpret(request: Request, answer: _Answer, max_size: int | None) -> tuple[ObjectInfo, int, bool]:
    """(info, offset where the body starts, not modified) of a final answer,
    or the error it means (``sources.answer``: the same checks as every
    HTTP answer)."""
    got = answers.interpret(request, answer.status, answer.headers, answer.reason, max_size=max_size, lowered=True)
    return got.info, got.offset, got.not_modified


_CURL_ERRORS: dict[int, tuple[type[errors.DlengineError], errors.ErrorCode | None]] = {
    pycurl.E_COULDNT_RESOLVE_HOST: (errors.SourceConnectionError, None),
    pycurl.E_COULDNT_CONNECT: (errors.SourceConnectionError, errors.ErrorCode.REFUSED),
    pycurl.E_OPERATION_TIMEDOUT: (errors.SourceTimeoutError, None),
    pycurl.E_TOO_MANY_REDIRECTS: (errors.RedirectError, None),
    pycurl.E_UNSUPPORTED_PROTOCOL: (errors.RedirectError, None),
    pycurl.E_PEER_FAILED_VERIFICATION: (errors.TLSError, None),
    pycurl.E_SSL_PEER_CERTIFICATE: (errors.TLSError, None),
    pycurl.E_SSL_CONNECT_ERROR: (errors.TLSError, None),
    pycurl.E_SSL_CACERT_BADFILE: (errors.TLSError, None),
    pycurl.E_FILESIZE_EXCEEDED: (errors.SizeMismatchError, None),
    pycurl.E_URL_MALFORMAT: (errors.MalformedLinkError, None),  # (as it is, every attempt: not retried)
}


def curl_error(code: int, message: str, url: str, refused: bool = False) -> errors.DlengineError:
    """libcurl's error -> dlengine's error class (resets, partial bodies and
    the like are transient: the next attempt resumes). ``refused``: the
    connect failed with ECONNREFUSED (nothing listens: failed at once)."""
    if refused:
        return errors.SourceRefusedError(f"{url}: connection refused ({message})")
    kind, ecode = _CURL_ERRORS.get(code, (errors.SourceConnectionError, None))
    if code == pycurl.E_COULDNT_CONNECT:
        message = f"cannot connect: host unreachable or not answering ({message})"
    elif kind is errors.SourceTimeoutError and "timeout" not in message.lower():
        message = f"timeout ({message})"  # the word AIStore's clients look for
    elif kind is errors.TLSError:
        message = f"TLS certificate verification failed or handshake refused ({message})"
    return kind(f"{url}: {message}", code=ecode) if ecode else kind(f"{url}: {message}")


class CurlLoop:
    """Many concurrent downloads on one thread (``run``)."""

    def __init__(
        self,
        report: Report | None,
        segment_threshold: int = 64 << 20,
        min_rate: int = 0,
        max_size: int | None = None,
        report_many: ReportMany | None = None,
        connections: int = 0,
        fewest: int = 0,
    ) -> None:
        """Outcomes go to ``report``, or (``report_many`` instead) those of
        each round at once: one hand-over to another thread, not one per object.
        ``connections``: objects in flight at most (0: every one submitted;
        an object in segments counts once; its owner may change it, ``allow``);
        those submitted beyond them wait in order, each started as soon as a
        transfer ends (``_fill``), not when the submitter's next batch comes.
        A server that turns an object away (429, 503) brings them down to
        ``fewest`` for good. New connections open CONNECTING at a time."""
        if (report is None) == (report_many is None):
            raise ValueError("CurlLoop takes report or report_many")
        self._report = report or self._keep
        self._report_many = report_many
        self._done: list[tuple[work.Result, bool]] = []  # (for report_many) this round's outcomes
        self.segment_threshold = segment_threshold
        self.min_rate = min_rate
        self.max_size = max_size
        self._whole_only: set[str] = set()  # hosts that ignore ranges
        self._crowded: set[str] = set()  # hosts that turned a connection away: their objects grow no more
        self._multi = pycurl.CurlMulti()
        self._free: list[Any] = []
        self._active: dict[Any, _Transfer] = {}
        self._objects: dict[int, int] = {}  # the objects of ``_active`` (row id -> its handles there)
        self._inbox: queue.SimpleQueue[_Submitted | _Ended | None] = queue.SimpleQueue()
        self._ending = 0  # objects whose end runs on a thread (``_end``)
        self._wake = Wake()
        self._poked = False  # the wake pipe holds a poke the loop has not seen yet
        self._stopped = False
        self._later: list[tuple[_Group, int]] = []  # segments to start once curl returns
        self.connections = connections
        self.fewest = min(fewest or connections, connections)
        self.turned_away = False  # a server answered 429 or 503: ``fewest`` from now on
        self._backlog: deque[_Submitted] = deque()  # submitted, waiting for a connection (``_fill``)
        self._seq = 0  # requests added so far (``_Transfer.seq``)
        self._answered = 0  # the latest request (by number) answered so far
        self._connecting = 0  # requests on connections opened for them, not answered yet (CONNECTING)
        # connections kept open by their servers and free, as far as the loop
        # knows, by origin (a redirect to a CDN opens one there however many
        # the first host keeps)
        self._idle: dict[str, int] = {}
        self.reasked = 0  # requests asked again, lost in a full listen queue (``_stuck``)
        self._answered_at: dict[str, float] = {}  # when each origin last answered (time.monotonic)
        self._caps: dict[str, int] = {}  # origin -> objects in flight to it at most (``_capped``)

    def submit(
        self, task: Task, ctx: work.Context, signed: SignedGet | None = None, route: Route | None = None
    ) -> None:
        """Start ``task`` (from any thread); its result goes to ``report``.
        ``signed``: a cloud object's GET, asked instead of the task's link;
        ``route``: how to fetch a link whose answers its source reads (hf://)."""
        self._inbox.put((task, ctx, signed, route))
        if not self._poked:  # one poke per wait, not one per task of a claim (a write and a wake-up each)
            self._poked = True
            self._wake.poke()

    def stop(self) -> None:
        self._inbox.put(None)
        self._wake.poke()

    def run(self) -> None:
        """Until ``stop``: start submitted transfers, drive them, report.
        If the loop itself fails, the transfers in flight are not reported
        (not as aborted: nobody aborted them): their work files stay for
        the next attempt, and the error goes on to the caller, whose
        worker dies of it (``supervisor.worker``)."""
        next_scan = 0.0
        failed = False
        try:
            while True:
                self._take_inbox()
                if self._stopped:  # at once: not after one more wait
                    break
                self._perform()
                now = time.monotonic()
                if now >= next_scan:
                    self._scan(now)
                    self._grow(now)
                    next_scan = now + SCAN_INTERVAL
                if self._backlog:
                    self._fill()
                self._hand_over()
                self._wait(next_scan - now)
        except BaseException:
            log.exception("the libcurl loop failed")
            failed = True
            raise
        finally:
            for handle in list(self._active):
                t = self._active.get(handle)
                if t is None:  # (a failed segment releases the others)
                    continue
                self._release(handle)
                if failed:  # not an outcome: its row goes back with its worker's death, its bytes kept
                    try:
                        t.receiver.close()
                    except OSError as exc:
                        log.warning("%s: work file not closed cleanly: %s", t.where, exc)
                    continue
                t.error = transfer.Aborted()
                self._finish(t)
            while self._backlog:  # (never started: nothing of theirs to keep)
                task, ctx, _, _ = self._backlog.popleft()
                if not failed:
                    self._report((work.failure(task, transfer.Aborted(), ctx), None), True)
            ended = self._wait_for_ends()
            self._hand_over()
            self._multi.close()
            if ended:  # (else a late end would poke a closed descriptor, maybe reused)
                self._wake.close()

    def _wait_for_ends(self) -> bool:
        """Stopping: the outcomes of the ends still running (their objects
        may be installed already: reported, not left for a resume to find);
        False if some did not come in time."""
        deadline = time.monotonic() + ENDING_WAIT
        while self._ending > 0:
            try:
                item = self._inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                log.warning("%d objects still being verified after %g s; not reported", self._ending, ENDING_WAIT)
                return False
            if isinstance(item, _Ended):
                self._ended(item)
        return True

    def _keep(self, result: work.Result, sidecar: bool) -> None:
        self._done.append((result, sidecar))

    def _hand_over(self) -> None:
        """This round's outcomes to ``report_many``."""
        if self._done and self._report_many is not None:
            done, self._done = self._done, []
            self._report_many(done)

    def _take_inbox(self) -> None:
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._stopped = True
                return
            if isinstance(item, _Ended):
                self._ended(item)
                continue
            if self.connections:
                self._backlog.append(item)
            else:
                self._start(*item)
        if self._backlog:
            self._fill()

    def answered(self, t: _Transfer) -> None:
        """A request got its answer."""
        if t.seq > self._answered:
            self._answered = t.seq
        self._answered_at[t.origin] = time.monotonic()
        self._settled(t)

    def _settled(self, t: _Transfer) -> None:
        """``t`` no longer counts as connecting: answered, or released."""
        if t.unanswered:
            t.unanswered = False
            self._connecting -= 1

    def opened(self, t: _Transfer) -> None:
        """A connection opens for ``t`` (from ``_open_socket``)."""
        t.opened = True
        if not t.unanswered:  # (a connection thought free was gone)
            t.unanswered = True
            self._connecting += 1

    def _stuck(self, t: _Transfer, now: float) -> bool:
        """Nothing came on the new connection of ``t`` for REASK_AFTER while
        requests sent REASK_LATER or more after it were answered, and its
        server has not taken the request."""
        return (
            t.opened
            and not t.lines
            and t.reasks < REASKS
            and self._answered >= t.seq + REASK_LATER
            and now - t.sent_at >= REASK_AFTER
            and _unheard(t)
        )

    def _reask(self, handle: Any, t: _Transfer, now: float) -> None:
        """Ask ``t`` again (its connection closed; on a new one, or one
        free now), not counted as an attempt."""
        self._release(handle)
        t.reasks += 1
        self.reasked += 1
        log.log(
            logging.INFO if t.reasks == 1 else logging.DEBUG,
            "%s: no answer on a new connection after %.1f s while later requests had theirs"
            " (lost in a server's full listen queue?); asked again",
            t.where,
            now - t.sent_at,
        )
        t.rewind()
        self._add(t)

    def allow(self, connections: int) -> None:
        """Objects in flight at most from now on (from any thread): fewer
        than asked once a server turned one away."""
        self.connections = min(connections, self.fewest) if self.turned_away else connections

    def _fill(self) -> None:
        """Waiting objects onto the connections free now, and onto new
        ones CONNECTING at a time."""
        backlog = self._backlog
        room = self.connections - len(self._objects) if self.connections else len(backlog)  # (0: no limit)
        while backlog and room > 0 and (self._connecting < CONNECTING or self._free_to(backlog[0])):
            if self._caps and self._at_cap(_origin(_url_of(backlog[0]))):
                break
            self._start(*backlog.popleft())
            room -= 1

    def _at_cap(self, origin: str) -> bool:
        """Whether ``origin`` has as many objects in flight as it takes."""
        cap = self._caps.get(origin)
        return cap is not None and self._flying(origin) >= cap

    def _flying(self, origin: str) -> int:
        """Objects in flight to ``origin`` (where their requests go now)."""
        return len({t.task.id for t in self._active.values() if t.origin == origin})

    def _free_to(self, item: _Submitted) -> int:
        """Connections free (kept open) to where ``item`` goes first."""
        return self._idle.get(_origin(_url_of(item)), 0)

    def _perform(self) -> None:
        while True:
            status, _ = self._multi.perform()
            if status != pycurl.E_CALL_MULTI_PERFORM:
                break
        # segments asked for in a callback start before any completion is
        # read: their object is not finished while they are to come
        while self._later:
            group, index = self._later.pop()
            if group.error is None:
                self._add_segment(group, index)
        while True:
            queued, ok, failed = self._multi.info_read()
            for handle in ok:
                t = self._active.get(handle)
                if t is not None:  # (not released by its group's failure meanwhile)
                    if _kept_open(t.lines):
                        self._idle[t.origin] = self._idle.get(t.origin, 0) + 1
                    self._finish(self._release(handle))
            for handle, code, message in failed:
                if handle not in self._active:
                    continue
                refused = code == pycurl.E_COULDNT_CONNECT and handle.getinfo(pycurl.OS_ERRNO) == errno.ECONNREFUSED
                reused = handle.getinfo(pycurl.NUM_CONNECTS) == 0
                t = self._release(handle)
                if code in _STALE_REPLY and reused and not t.fresh and not t.begun and t.error is None:
                    self._ask_fresh(t, code, message)
                    continue
                if t.error is None and t.held is None and t.redirect is None:
                    self._redirect_despite(t, code, message)
                if t.error is None and t.held is None and t.redirect is None:
                    if code in _SHUT_OUT and self._capped(t, message):
                        continue
                    t.error = curl_error(code, message, t.where, refused)
                self._finish(t)
            if not queued:
                return

    def _capped(self, t: _Transfer, message: str) -> bool:
        """Whether ``t``'s new connection, refused or closed before any
        answer, was one more than its server takes from here (it serves
        others: ``_serving``): if so, the objects in flight to it now, and
        one fewer at each refusal after that, are its cap from now on, and
        ``t`` waits (its object back in the backlog, first; a segment among
        its object's waiting ones). Below one object it is an error."""
        if not t.opened or t.lines or not self._serving(t.origin):
            return False
        before = self._caps.get(t.origin)
        cap = self._flying(t.origin) if before is None else min(before - 1, self._flying(t.origin))
        if cap < 1:
            return False
        self._caps[t.origin] = cap
        log.log(
            logging.INFO if before is None else logging.DEBUG,
            "%s: a new connection refused (%s) while the server answers others: %d objects in flight to it"
            " at most from now on",
            t.where,
            message,
            cap,
        )
        if t.group is not None:  # (it waits for one of its object's connections)
            t.shut_out, t.error = True, curl_error(pycurl.E_COULDNT_CONNECT, message, t.where)
            self._finish(t)
            return True
        t.receiver.close()
        self._backlog.appendleft((t.task, t.ctx, t.signed, t.route))
        return True

    def _serving(self, origin: str) -> bool:
        """Whether ``origin`` serves this loop: it answered within
        SERVING_WITHIN, or a connection to it is established now (where
        nothing listens, every connection is refused)."""
        if time.monotonic() - self._answered_at.get(origin, float("-inf")) <= SERVING_WITHIN:
            return True
        return any(
            t.origin == origin and (t.lines or _tcp_state(t)[0] == _TCP_ESTABLISHED) for t in self._active.values()
        )

    def _ask_fresh(self, t: _Transfer, code: int, message: str) -> None:
        """Garbage where an answer should start, on a reused connection:
        most likely bytes an earlier answer sent past its Content-Length
        (a misbehaving server), not this object's fault. Asked again at
        once on a new connection, not counted as an attempt."""
        log.debug("%s: curl error %s (%s) on a reused connection; asking again on a new one", t.where, code, message)
        t.fresh = True
        t.rewind()
        self._add(t)

    @staticmethod
    def _redirect_despite(t: _Transfer, code: int, message: str) -> None:
        """A redirect whose body was cut short (a server closing after the
        headers) is still a redirect: its body does not matter."""
        if not t.begun:
            t.parse()
        if t.begun or t.answer.status not in redirects.REDIRECT_STATUSES or "location" not in t.answer.headers:
            return
        log.debug("%s: redirect answer ended with curl error %s (%s); following it", t.url, code, message)
        try:
            t.begin()
        except BaseException as exc:  # noqa: BLE001 - errors are outcomes
            t.error = exc

    def _wait(self, limit: float) -> None:
        timeout_ms = self._multi.timeout()
        timeout = limit if timeout_ms < 0 else min(limit, timeout_ms / 1000)
        if timeout <= 0:
            return
        readers, writers, errs = self._multi.fdset()
        ready, _, _ = select.select([*readers, self._wake.r], writers, errs, timeout)
        if self._wake.r in ready:
            # after the drain: cleared before it, a poke made in between
            # would be drained with the flag still set, and no later task
            # would poke again (each would wait for the next scan)
            self._wake.drain()
            self._poked = False  # a task put from now on pokes; one put before is taken next

    def _scan(self, now: float) -> None:
        """End transfers aborted while nothing arrives (the write callback
        sees the others) and transfers that stalled; objects aborted while
        they wait for a connection."""
        if any(_cancelled(ctx) for _, ctx, _, _ in self._backlog):
            waiting, self._backlog = self._backlog, deque()
            for item in waiting:
                task, ctx, _, _ = item
                if _cancelled(ctx):
                    self._report((work.failure(task, transfer.Aborted(), ctx), None), True)
                else:
                    self._backlog.append(item)
        for handle, t in list(self._active.items()):
            if _cancelled(t.ctx):
                t.error = transfer.Aborted()
            elif self._stuck(t, now):
                self._reask(handle, t, now)
                continue
            elif t.stalled(now):
                t.error = errors.SourceTimeoutError(
                    f"{t.where}: timeout: less than {max(1, t.min_rate)} bytes/s over {t.timeout:g} s"
                    " (DLENGINE_MIN_RATE; a trickle is a stall)"
                )
            else:
                continue
            self._release(handle)
            self._finish(t)

    def _start(self, task: Task, ctx: work.Context, signed: SignedGet | None, route: Route | None) -> None:
        try:
            job = work.transfer_job(task, ctx, None, route.url if route else task.link, None)
            receiver = transfer.Receiver(task, job)
            receiver.limit, receiver.looked_after = self.max_size, True  # (aborts: ``_scan``)
        except BaseException as exc:  # noqa: BLE001 - errors are outcomes
            self._report((work.failure(task, exc, ctx), None), True)
            return
        if receiver.kept_segments and receiver.validator and route is None:
            self._resume_segments(self._transfer(task, ctx, receiver, signed), receiver.validator)
            return
        t = self._transfer(task, ctx, receiver, signed)
        if route is not None:
            t.route, t.hop = route, dataclasses.replace(receiver.request, headers=route.headers)
        else:
            t.opening = self.opening(task, receiver.request, signed)
        self._add(t)

    def _transfer(
        self, task: Task, ctx: work.Context, receiver: transfer.Receiver, signed: SignedGet | None = None
    ) -> _Transfer:
        url = signed.url if signed is not None else receiver.request.key
        t = _Transfer(task, ctx, receiver, None, timeout=receiver.job.timeout, loop=self, url=url)
        t.min_rate, t.max_size, t.signed = self.min_rate, self.max_size, signed
        return t

    def _add(self, t: _Transfer) -> None:
        handle = self._free.pop() if self._free else pycurl.Curl()
        t.handle = handle
        try:
            _configure(handle, t)
        except Exception as exc:  # noqa: BLE001 - a request libcurl cannot be given fails its object, not the loop
            handle.reset()
            self._free.append(handle)
            t.error = errors.MalformedLinkError(f"{t.where}: cannot be requested ({type(exc).__name__}: {exc})")
            self._finish(t)
            return
        self._active[handle] = t
        self._seq += 1
        t.seq, t.sent_at, t.opened = self._seq, time.monotonic(), False
        t.origin = origin = _origin(t.url)
        idle = self._idle.get(origin, 0)
        if idle and not t.fresh:
            self._idle[origin] = idle - 1
        else:
            t.unanswered = True
            self._connecting += 1
        row = t.task.id
        self._objects[row] = self._objects.get(row, 0) + 1
        self._multi.add_handle(handle)

    def may_segment(self, link: str) -> bool:
        return _origin(link) not in self._whole_only

    def large(self, size: int | None) -> bool:
        """Whether an object of ``size`` may come in segments (asked before
        ``segments_now``, which looks at every transfer in flight)."""
        return (size or 0) >= self.segment_threshold

    def segments_now(self, starting: int = 0) -> int:
        """How many segments an object answering now (or one of
        ``starting`` objects not in flight yet) may take: the objects in
        flight share ``STREAMS`` streams (one alone takes them all; eight or
        more come whole). Segments beside objects that already keep the loop
        busy only add requests and connections: 8 x 64 MiB from SeaweedFS,
        four objects a worker, two segments each were 1.06-1.16x as fast as
        four (bench/RESULTS-cloud.md, fifth part)."""
        objects = len(self._objects) + starting
        return max(1, STREAMS // max(1, objects))

    def opening(self, task: Task, request: Request, signed: SignedGet | None) -> int:
        """Where the first segment of a large object ends when its first
        request asks for that segment only (0: it asks for the whole
        object). Only for a source whose ranged answers carry the object's
        ETag (``SignedGet.ranged``: S3) and a size known before the first
        answer (its listing's): the whole-object answer, cut at the end of
        its segment, kept SeaweedFS sending the rest after the cut (8 x 64
        MiB: ~40 ms more of its CPU an object, on a box the client shares
        with it), and the cut closed a connection another request could
        have reused (bench/RESULTS-cloud.md, 2026-12-03 night)."""
        size = task.size or 0
        if signed is None or not signed.ranged or request.offset or task.connections or not self.large(size):
            return 0
        if task.attempts > 1:  # (a failed first attempt: the next asks for the whole object, as any other)
            return 0
        if not self.may_segment(task.link):
            return 0
        bounds = split(size, self.segment_threshold, self.segments_now(starting=1))
        return bounds[0][1] if len(bounds) > 1 else 0

    def ranges_ignored(self, link: str) -> None:
        """The objects of ``link``'s origin come whole from now on."""
        self._whole_only.add(_origin(link))

    def segmented(self, first: _Transfer, validator: str) -> None:
        """``first`` answered for a large object: it goes on as segment 0,
        the other segments start now."""
        segments = first.receiver.segments
        assert segments is not None
        group = _Group(first, validator, first.receiver.info.size or 0, {first}, mark_bytes=first.receiver.written)
        first.group, first.segment = group, 0
        # from curl's write callback, where handles cannot be added: later
        self._later += [(group, index) for index in range(1, len(segments))]

    def _add_segment(self, group: _Group, index: int) -> None:
        first = group.first
        segments = first.receiver.segments
        assert segments is not None
        t = self._transfer(first.task, first.ctx, first.receiver, first.signed)
        t.url = first.url  # where the first answer came from, after its redirects
        # a route's segments ask what its last hop asked, as that hop did
        # (another origin than the first request's: no secret header)
        t.route, t.hop, t.hops = first.route, first.hop, first.hops
        t.group, t.segment = group, index
        group.members.add(t)
        _, pos, end = segments[index]
        t.ranged = (pos, end - 1)
        self._add(t)

    def _resume_segments(self, first: _Transfer, validator: str) -> None:
        """An attempt after a crash or a failure: every unfinished segment
        goes on where it stopped, each guarded by the kept ETag (or, for a
        route's, as ``_Group.vouched`` says), asking what ``first`` would
        have asked."""
        receiver = first.receiver
        try:
            segments = receiver.resume_segments()
        except BaseException as exc:  # noqa: BLE001 - errors are outcomes
            self._fail(first, exc)
            return
        group = _Group(first, validator, receiver.info.size or 0, mark_bytes=receiver.written)
        first.group = group
        todo = [i for i, (_, pos, end) in enumerate(segments) if pos < end]
        if not todo:  # all bytes were there: verify and install
            self._finish_group(group)
            return
        for index in todo:
            self._add_segment(group, index)

    def _release(self, handle: Any) -> _Transfer:
        t = self._active.pop(handle)
        if t.sock is not None:
            t.sock.close()
            t.sock = None
        self._settled(t)
        row = t.task.id
        left = self._objects[row] - 1
        if left:
            self._objects[row] = left
        else:
            del self._objects[row]
        try:
            self._multi.remove_handle(handle)
        except pycurl.error:
            pass  # already removed (cancelled)
        handle.reset()
        self._free.append(handle)
        return t

    def _finish(self, t: _Transfer) -> None:
        if t.error is None and t.held is None and not t.begun:
            try:  # an answer without a body: a redirect, 304, 416 for kept bytes, empty
                t.begin()
            except BaseException as exc:  # noqa: BLE001 - errors are outcomes
                t.error = exc
        if t.redirect is not None and t.error is None:
            self._follow(t)
            return
        if t.group is not None:
            self._finish_segment(t.group, t)
            return
        if t.error is not None:
            self._fail(t, t.error)
            return
        if t.held is not None:
            self._report(t.held, t.receiver.sidecar)
            return
        self._end(t, None)

    def _follow(self, t: _Transfer) -> None:
        """The answer was a redirect: the same transfer asks its target (the
        egress policy checks the address when the connection opens)."""
        t.url, t.redirect = t.redirect or t.url, None
        t.hops += 1
        t.rewind()
        t.fresh = False
        if t.route is not None and self._resumes_on_route(t, t.route):
            self._resume_segments(t, "")
            return
        self._add(t)

    def _resumes_on_route(self, t: _Transfer, route: Route) -> bool:
        """Whether a route's redirect leads to where the kept segments of
        its file can go on: the route vouches for segments there (an LFS
        file of the Hub with its sha256) and the Hub still names the
        version the kept bytes were written under. Each then asks its CDN
        for the rest of its range, checked by the range (the CDN's ETag
        of the first attempt is not kept), the whole by the sha256."""
        receiver = t.receiver
        if not receiver.kept_segments or not receiver.validator or t.request.offset or t.task.connections:
            return False
        if route.segment_validator({}) is None or not self.may_segment(t.task.link):
            return False
        return route.names(receiver.validator)

    def _finish_segment(self, group: _Group, t: _Transfer) -> None:
        group.members.discard(t)
        if t.error is not None and not t.cut and group.error is None:
            if group.members and (t.shut_out or (t.begun and t.answer.status in _BUSY)):
                # one connection more than the server takes: its range
                # waits for one of the group's to end, and no more grow
                log.debug("%s: segment %d turned away (%s); it waits", t.where, t.segment, t.error)
                group.waiting.append(t.segment)
                group.turned_away, group.growing = t.error, False
                self._crowded.add(_origin(t.url))
                return
            group.error = t.error
            if isinstance(t.error, RangesIgnored):
                self.ranges_ignored(t.task.link)
            for other in list(group.members):  # the object fails as one
                self._release(other.handle)
                group.members.discard(other)
        if group.error is None and (group.members or group.waiting):
            self._steal(group)  # (a segment turned away goes on, even if this one was the last running)
        if not group.members:
            self._finish_group(group)

    def _steal(self, group: _Group) -> None:
        """A segment is complete while others still run: a segment the
        server turned away goes on the connection just freed; else the
        second half of what the furthest behind has left (at least
        ``STEAL_LEAST`` a half) becomes a new segment there (as aria2
        does), and the lagging one stops at the middle: on a lossy link
        each connection's rate varies on its own, and an object ended at
        the pace of its slowest connection, the others idle."""
        if group.waiting:
            self._add_segment(group, group.waiting.pop(0))
            return
        self._split_off(group)

    def _split_off(self, group: _Group) -> bool:
        """The second half of what the group's furthest behind segment has
        left, as a new segment on a connection of its own; False if no
        segment has enough left."""
        receiver = group.first.receiver
        left, victim = max(((receiver.left(m.segment), m) for m in group.members), key=lambda item: item[0])
        if left < 2 * STEAL_LEAST:
            return False
        index = receiver.split(victim.segment)
        if index is None:
            return False
        victim.shortened = True
        log.debug("%s: segment %d split; its second half is segment %d", group.first.where, victim.segment, index)
        self._add_segment(group, index)
        return True

    def _grow(self, now: float) -> None:
        """More connections for objects whose segments each go at a
        connection's pace, not the link's or this box's (a mirror's or a
        CDN's per-connection cap; a long lossy link, where a TCP
        connection's rate falls with the loss): half as many again,
        ``GROW_WINDOW`` after the last look, while the loop has fewer than
        ``GROWN_MOST`` connections in all, and each connection keeps most of
        its rate as more are added (``grown``). Each new one takes half of
        what the furthest behind segment has left. A server that turns a
        connection away (429, 503) ends its host's growth."""
        groups = {t.group for t in self._active.values() if t.group is not None and t.group.growing}
        if not groups:
            return
        streams = len(self._active)  # (the loop's connections: large objects' segments and the rest)
        for group in groups:
            elapsed = now - group.mark_at
            if group.error is not None or elapsed < GROW_WINDOW:
                continue
            if group.waiting or _origin(group.first.url) in self._crowded:
                group.growing = False
                continue
            written = group.first.receiver.written
            per = (written - group.mark_bytes) / elapsed / max(1, group.width or len(group.members))
            add = grown(len(group.members), per, group.per_connection, GROWN_MOST - streams)
            if add < 0:
                group.growing = False
                continue
            added = 0
            while added < add and self._split_off(group):
                added += 1
            if add and not added:  # (nothing left to split)
                group.growing = False
                continue
            streams += added
            group.per_connection = per
            group.mark_at, group.mark_bytes, group.width = now, written, len(group.members)

    def _finish_group(self, group: _Group) -> None:
        first = group.first
        if group.error is not None:
            self._fail(first, group.error)
            return
        self._end(first, True)

    def _end(self, t: _Transfer, sidecar: bool | None) -> None:
        """Every byte received: verify and install (``Receiver.end``), then
        report. An object whose checksum is still being computed on its
        thread ends on a thread too: the loop goes on receiving the other
        objects meanwhile, instead of waiting for the rest of the hash (most
        of it, for segments: the prefix reaches the last ones at the end)
        and the fsync; the outcome comes back through the inbox.
        ``sidecar``: whether a .meta may exist (None: as the receiver says)."""
        receiver = t.receiver
        if not receiver.ends_later:
            try:
                result = receiver.end()
            except BaseException as exc:  # noqa: BLE001 - errors are outcomes
                self._fail(t, exc)
                return
            self._report(result, receiver.sidecar if sidecar is None else sidecar)
            return

        def end() -> None:
            got: work.Result | BaseException
            try:
                got = receiver.end()
            except BaseException as exc:  # noqa: BLE001 - reported by the loop
                got = exc
            self._inbox.put(_Ended(t, got, receiver.sidecar if sidecar is None else sidecar))
            self._wake.poke()

        self._ending += 1
        threading.Thread(target=end, name="dlengine-end", daemon=True).start()

    def _ended(self, item: _Ended) -> None:
        self._ending -= 1
        if isinstance(item.got, BaseException):
            self._fail(item.transfer, item.got)
        else:
            self._report(item.got, item.sidecar)

    def _fail(self, t: _Transfer, exc: BaseException) -> None:
        if t.group is None and t.begun and t.answer.status in _BUSY and not self.turned_away:
            log.info("%s: HTTP %d: %d objects at once at most from now on", t.where, t.answer.status, self.fewest)
            self.turned_away = True
            self.connections = min(self.connections, self.fewest)
        t.receiver.close()
        if t.route is not None:
            exc = t.route.reword(exc)
        self._report((work.failure(t.task, exc, t.ctx), None), True)


def _cancelled(ctx: work.Context) -> bool:
    return ctx.cancel is not None and ctx.cancel.is_set()


def _unheard(t: _Transfer) -> bool:
    """Whether the server has not taken the request of ``t`` in: the
    connection it opened is not established, or the request's bytes are
    not acknowledged (Linux's TCP_INFO; elsewhere: True)."""
    state, unacked = _tcp_state(t)
    return state != _TCP_ESTABLISHED or unacked > 0


def _tcp_state(t: _Transfer) -> tuple[int, int]:
    """The state of the connection ``t`` opened and its bytes sent and not
    acknowledged (Linux's TCP_INFO); (0, 0) where it cannot be read."""
    if t.sock is None or not hasattr(socket, "TCP_INFO"):
        return 0, 0
    try:
        info = t.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
    except OSError:
        return 0, 0
    return info[0], int.from_bytes(info[24:28], sys.byteorder)


def _kept_open(lines: list[bytes]) -> bool:
    """Whether the server keeps the connection of an answer (its header
    lines) open: HTTP/1.1 and later unless it says "close"; 1.0 only with
    "keep-alive". (Per object: the joined lines searched in C, ~0.6 us.)"""
    if not lines:
        return False
    status = lines[0]
    if status[9:10] == b"1":  # (an interim 1xx before the answer)
        status = next((line for line in reversed(lines) if line[:5] == b"HTTP/"), status)
    head = b"".join(lines).lower()
    at = head.rfind(b"\nconnection:")
    said = head[at + 12 : head.find(b"\n", at + 1)] if at >= 0 else b""
    if not status.startswith(b"HTTP/") or b"close" in said:
        return False
    return status[5:8] != b"1.0" or b"keep-alive" in said


def _url_of(item: _Submitted) -> str:
    """Where a submitted object's first request goes."""
    task, _, signed, route = item
    return signed.url if signed is not None else route.url if route is not None else task.link


def _origin(link: str) -> str:
    scheme, _, rest = link.partition("://")
    return f"{scheme.lower()}://{rest.split('/', 1)[0].lower()}"


def _configure(handle: Any, t: _Transfer) -> None:
    """A (reset) easy handle set up for one request: the whole object with
    the receiver's conditions, or one segment's range guarded by its
    group's ETag. Secret headers go only to the job's own origin (a
    signed GET's: only to its URL's)."""
    request = t.request
    origin, sent = (t.signed.url, t.signed.headers) if t.signed is not None else (t.task.link, request.headers)
    if t.route is not None:
        origin = t.route.url
    own = redirects.headers_for(origin, t.url, sent) if t.hops else sent
    headers = [*_BASE_HEADERS, *(f"{k}: {v}" for k, v in own.items())]
    if t.ranged is not None and t.group is not None:
        headers.append(f"Range: bytes={t.ranged[0]}-{t.ranged[1]}")
        if t.group.validator:
            headers.append(f"If-Range: {t.group.validator}")
    else:
        headers += [f"{k}: {v}" for k, v in answers.conditional_headers(request).items()]
        if t.opening:  # (with an If-None-Match, a 304 is still the answer to a stored copy)
            headers.append(f"Range: bytes=0-{t.opening - 1}")
    setopt = handle.setopt
    setopt(pycurl.URL, t.url)
    tls.configure(handle)
    setopt(pycurl.HTTPHEADER, headers)
    setopt(pycurl.NOSIGNAL, 1)
    setopt(pycurl.PROTOCOLS, _PROTOCOLS)
    setopt(pycurl.CONNECTTIMEOUT_MS, max(1, int(t.timeout * 1000)))
    setopt(pycurl.BUFFERSIZE, BUFFER_SIZE)
    setopt(pycurl.HEADERFUNCTION, t.lines.append)  # (a C call per line, not a Python one)
    setopt(pycurl.WRITEFUNCTION, t.on_body)
    setopt(pycurl.OPENSOCKETFUNCTION, functools.partial(_open_socket, t))
    if t.fresh:
        setopt(pycurl.FRESH_CONNECT, 1)


def _open_socket(t: _Transfer, purpose: int, address: Any) -> Any:
    """Every connection, redirects included, on the address actually used."""
    try:
        egress.check_address(str(address.addr[0]))
    except errors.DlengineError as exc:
        t.error = exc
        return pycurl.SOCKET_BAD
    if t.loop is not None:
        t.loop.opened(t)
    if t.sock is not None:  # (a second connection for one transfer: a happy-eyeballs race)
        t.sock.close()
    t.sock = socket.socket(address.family, address.socktype, address.protocol)
    return t.sock

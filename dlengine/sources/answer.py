"""What an HTTP answer means for a download: one pure function, shared by
every HTTP client dlengine drives (urllib3 in ``sources.http``, libcurl).

``interpret(request, status, headers)`` turns the status line and headers
of the answer to a GET (after redirects were followed) into an ``Answer``
(what the object is, where its body starts, whether there is one), or
raises the dlengine error the answer stands for. Nothing a server sends is
taken on trust:

- 200 (or 203) is the whole object, from offset 0, even to a ranged
  request: the kept bytes are then worthless and the caller starts over.
- 206 must answer the request that was made: a ``Content-Range`` that
  starts at the requested offset and runs to the end of the object, and the
  validator asked for in ``If-Range`` as its ``ETag`` or ``Last-Modified``.
  A server that ignores ``If-Range`` would otherwise glue the end of a new
  version onto the start of the old one. Anything else raises
  ``SourceChangedError`` (transient, ``restart``): the work file is dropped
  and the next attempt asks for the whole object. (It cannot be taken as a
  fresh 200: its body starts in the middle of the object.)
- 304 is "not modified" only for a conditional request (``If-None-Match``
  / ``If-Modified-Since``); to any other it is an error, never an empty
  object. 204 and 205 carry no object: an error naming the status.
- a 3xx that reaches here was not followed (no ``Location``, 300, 305, a
  redirect refused): ``RedirectError`` naming the status.
- 416 to ``bytes=N-`` from the version we hold, whose size is N: the kept
  bytes are the whole object (no body to read); any other 416 means the
  object changed.
- 4xx / 5xx: the error class of the status (busy with ``Retry-After``,
  not found, denied, other).
- A declared size above ``max_size`` fails at once (``ObjectTooLargeError``).

``headers`` may be any mapping; names are compared without case.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping

from dlengine import errors
from dlengine.records import frozen
from dlengine.sources import checksums
from dlengine.sources.base import ObjectInfo, Request

__all__ = [
    "Answer",
    "conditional_headers",
    "content_range",
    "interpret",
    "parse_header_lines",
    "parse_retry_after",
    "status_error",
    "total_size",
]

BUSY = frozenset({408, 429, 500, 502, 503, 504})
_WHOLE = frozenset({200, 203})
_NO_CONTENT = frozenset({204, 205})
_CONTENT_RANGE = re.compile(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", re.IGNORECASE)


@frozen
class Answer:
    """What an answer holds: the object's metadata, the offset its body
    starts at (the requested one for a 206, else 0), whether it said "not
    modified", and whether it has a body to read."""

    info: ObjectInfo
    offset: int
    not_modified: bool = False
    body: bool = True


def conditional_headers(request: Request) -> dict[str, str]:
    """The headers that make ``request`` what it is: Range + If-Range to
    resume, else If-None-Match / If-Modified-Since to skip an object that
    is already stored."""
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


def interpret(
    request: Request,
    status: int,
    headers: Mapping[str, str],
    reason: str = "",
    *,
    max_size: int | None = None,
    lowered: bool = False,
) -> Answer:
    """The ``Answer`` of an HTTP ``status`` with ``headers`` to ``request``
    (built with ``conditional_headers``), or the dlengine error it means.
    ``max_size``: the largest object accepted (``DLENGINE_MAX_OBJECT_SIZE``);
    ``lowered``: the header names are lower-case already (``parse_header_lines``)."""
    lower = headers if lowered else {name.lower(): value for name, value in headers.items()}
    if status == 304:
        return _not_modified(request, lower)
    if status == 416 and request.offset > 0:
        return _unsatisfiable(request, lower)
    if status >= 400:
        raise status_error(request.key, status, lower, reason)
    if status == 206:
        answer = _partial(request, lower)
    elif status in _WHOLE:
        answer = Answer(_info(request.key, lower, partial=False, offset=0), 0)
    else:
        raise _unusable(request.key, status, lower, reason)
    check_size(request.key, answer.info.size, max_size)
    return answer


def check_size(key: str, size: int | None, max_size: int | None) -> None:
    """Refuse an object declared larger than ``max_size`` before any byte
    is written."""
    if size is not None and max_size is not None and size > max_size:
        raise errors.ObjectTooLargeError(
            f"{key}: the source declares {size} bytes, more than the maximum object size"
            f" of {max_size} bytes (DLENGINE_MAX_OBJECT_SIZE)"
        )


def _not_modified(request: Request, headers: Mapping[str, str]) -> Answer:
    if request.offset == 0 and (request.if_none_match or request.if_modified_since):
        return Answer(_info(request.key, headers, partial=False, offset=0), 0, not_modified=True, body=False)
    raise errors.SourceHTTPError(
        f"{request.key}: HTTP 304 Not Modified to a request that was not conditional: the server sent no object"
    )


def _unsatisfiable(request: Request, headers: Mapping[str, str]) -> Answer:
    if _kept_whole(request, headers):
        return Answer(_info(request.key, headers, partial=True, offset=request.offset), request.offset, body=False)
    raise errors.SourceChangedError(f"{request.key}: range not satisfiable; the object changed")


def _kept_whole(request: Request, headers: Mapping[str, str]) -> bool:
    """A 416 to ``bytes=N-`` from the version we hold, whose size is N: the
    kept bytes are the whole object (an attempt ended just before its rename)."""
    total = str(headers.get("content-range", "")).rpartition("/")[2].strip()
    return _carries_validator(request, headers) and total == str(request.offset)


def _carries_validator(request: Request, headers: Mapping[str, str]) -> bool:
    """Whether the answer is from the version ``If-Range`` named."""
    wanted = request.if_range
    return wanted is not None and wanted in (headers.get("etag"), headers.get("last-modified"))


def _partial(request: Request, headers: Mapping[str, str]) -> Answer:
    """A 206 is accepted only as the answer to the request that was made."""
    span = content_range(headers.get("content-range"))
    problem = None
    if span is None:
        problem = f"a missing or malformed Content-Range ({headers.get('content-range')!r})"
    elif span[0] != request.offset:
        problem = f"bytes from {span[0]} where {request.offset} were asked for"
    elif span[2] is not None and span[1] != span[2] - 1:
        problem = f"a range ending at byte {span[1]} of {span[2]}, not at the end of the object"
    elif request.if_range and not _carries_validator(request, headers):
        got = headers.get("etag") or headers.get("last-modified") or "none"
        problem = f"validator {got}, not the {request.if_range} asked for in If-Range"
    if problem is not None:
        raise errors.SourceChangedError(f"{request.key}: HTTP 206 with {problem}; starting over from zero")
    return Answer(_info(request.key, headers, partial=True, offset=request.offset), request.offset)


def parse_header_lines(lines: Iterable[bytes | str]) -> tuple[int, str, dict[str, str]]:
    """(status, reason, headers with lowercase names) of the last answer in
    raw header lines as a client hands them over (libcurl's header
    callback: a status line, ``Name: value`` lines, a blank line; one block
    per interim answer or redirect followed). Repeated headers are joined
    with ``", "``; folded continuation lines are appended. A block without
    a status line gives status 0."""
    status, reason = 0, ""
    headers: dict[str, str] = {}
    for raw in lines:  # (once per object: kept lean)
        line = raw.decode("latin-1") if isinstance(raw, bytes) else raw
        first = line[:1]
        if first == "H" and line.startswith("HTTP/"):
            parts = line.rstrip("\r\n").split(None, 2)
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            reason, headers = (parts[2] if len(parts) > 2 else ""), {}
        elif first in (" ", "\t"):
            if headers and (rest := line.strip()):
                last = next(reversed(headers))
                headers[last] = f"{headers[last]} {rest}"
        else:
            name, colon, value = line.partition(":")
            if colon:
                name, value = name.strip().lower(), value.strip()
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return status, reason, headers


def content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """``bytes START-END/TOTAL`` as (start, end, total or None for ``*``);
    None when absent or malformed."""
    match = _CONTENT_RANGE.fullmatch(value or "")
    if match is None:
        return None
    start, end, total = match.groups()
    if int(end) < int(start) or (total != "*" and int(end) >= int(total)):
        return None
    return int(start), int(end), None if total == "*" else int(total)


def _unusable(key: str, status: int, headers: Mapping[str, str], reason: str) -> errors.DlengineError:
    """A status below 400 that is no object to store."""
    line = f"HTTP {status} {reason}".rstrip()
    if status in _NO_CONTENT:
        return errors.SourceHTTPError(f"{key}: {line}: the server sent no object")
    if 300 <= status < 400:
        where = headers.get("location")
        target = f" to {where}" if where else " without a Location"
        return errors.RedirectError(f"{key}: {line}: a redirect{target} that was not followed")
    return errors.SourceHTTPError(f"{key}: unexpected {line}: not an object")


def status_error(key: str, status: int, headers: Mapping[str, str], reason: str = "") -> errors.DlengineError:
    """The dlengine error of an HTTP error status (>= 400)."""
    line = f"{key}: HTTP {status} {reason}".rstrip()
    if status in BUSY or status >= 500:
        retry_after = parse_retry_after(_get(headers, "retry-after"))
        return errors.ServerBusyError(line, retry_after=retry_after)
    if status in (404, 410):
        return errors.SourceNotFoundError(line)
    if status in (401, 403):
        return errors.SourceDeniedError(line)
    return errors.SourceHTTPError(line)


def _get(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime  # rare: not at every worker's start

    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def info_of(key: str, headers: Mapping[str, str], *, partial: bool = False, offset: int = 0) -> ObjectInfo:
    """An object's metadata from an answer's headers (a HEAD's, a GET's)."""
    return _info(key, {name.lower(): value for name, value in headers.items()}, partial=partial, offset=offset)


def _info(key: str, headers: Mapping[str, str], *, partial: bool, offset: int) -> ObjectInfo:
    return ObjectInfo(
        key=key,
        size=total_size(headers, partial, offset),
        etag=headers.get("etag"),
        last_modified=headers.get("last-modified"),
        checksums=checksums.from_headers(headers, partial=partial),
    )


def total_size(headers: Mapping[str, str], partial: bool, offset: int) -> int | None:
    """Whole-object size (lowercase header names): from Content-Range on a
    206, else Content-Length."""
    if partial:
        total = str(headers.get("content-range", "")).rpartition("/")[2].strip()
        if total.isdigit():
            return int(total)
    length = str(headers.get("content-length", "")).strip()
    if not length.isdigit():
        return None
    return int(length) + (offset if partial else 0)

"""The two S3 requests dlengine sends besides object GETs, without botocore,
for the configurations ``awsenv`` reads (static keys, a custom endpoint):
the bucket's region (one HEAD) and ListObjectsV2 pages.

botocore costs the supervisor 0.6-0.8 s of CPU to import and set up, and
its XML parser (dateutil for every LastModified) ~0.1 ms per listed key:
for a backend job of 5,000 small objects, as much CPU as their GETs. Here
a page is one presigned GET through a plain pycurl handle (already loaded:
the workers' engine) and ``xml.etree`` (expat). Keys are listed with
``encoding-type=url`` and decoded, as botocore does (a key may hold
characters XML cannot carry). What the answer means is read as
``sources.s3`` reads botocore's errors: the same error classes.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterator, Mapping
from io import BytesIO
from urllib.parse import unquote_plus

from dlengine import errors
from dlengine.records import frozen

__all__ = ["Page", "Reply", "get", "http_date", "list_pages", "parse_page"]

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
MAX_REPLY = 64 << 20  # a listing page of 1,000 keys is ~300 KiB


@frozen
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes


def get(
    url: str,
    method: str = "GET",
    timeout: float = 60.0,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
) -> Reply:
    """One request through a plain pycurl handle (answer headers
    lower-cased; the last of a repeated header wins); ``headers`` and
    ``body`` are sent as given (a POST to a token endpoint, a bearer
    token). Network failures raise ``SourceConnectionError`` /
    ``SourceTimeoutError``, never naming the URL (it carries a signature)."""
    import pycurl

    from dlengine.net import tls

    answer: dict[str, str] = {}
    received = BytesIO()

    def header(line: bytes) -> None:
        name, sep, value = line.decode("latin-1").partition(":")
        if sep:
            answer[name.strip().lower()] = value.strip()
        elif name.startswith("HTTP/"):
            answer.clear()  # a new answer (after 100 Continue): its headers only

    def write(chunk: bytes) -> int | None:
        if received.tell() + len(chunk) > MAX_REPLY:
            return 0  # abort: no S3 answer of ours is that large
        received.write(chunk)
        return None

    handle = pycurl.Curl()
    try:
        handle.setopt(pycurl.URL, url)
        tls.configure(handle)
        if method == "HEAD":
            handle.setopt(pycurl.NOBODY, True)
        elif body is not None:
            handle.setopt(pycurl.POSTFIELDS, body)
        if method not in ("GET", "HEAD") and not (method == "POST" and body is not None):
            handle.setopt(pycurl.CUSTOMREQUEST, method)
        if headers:
            handle.setopt(pycurl.HTTPHEADER, [f"{k}: {v}" for k, v in headers.items()])
        handle.setopt(pycurl.HEADERFUNCTION, header)
        handle.setopt(pycurl.WRITEFUNCTION, write)
        handle.setopt(pycurl.TIMEOUT, max(1, int(timeout)))
        handle.setopt(pycurl.NOSIGNAL, True)
        handle.setopt(pycurl.ACCEPT_ENCODING, "")
        handle.perform()
        status = int(handle.getinfo(pycurl.RESPONSE_CODE))
    except pycurl.error as exc:
        code = exc.args[0] if exc.args else 0
        reason = exc.args[1] if len(exc.args) > 1 else ""
        if code == pycurl.E_OPERATION_TIMEDOUT:
            raise errors.SourceTimeoutError(f"timed out ({reason})") from None
        raise errors.SourceConnectionError(str(reason).split(" for ")[0] or f"curl error {code}") from None
    finally:
        handle.close()
    return Reply(status, answer, received.getvalue())


@frozen
class Page:
    """One ListObjectsV2 answer: (key, size, ETag, Last-Modified as an
    HTTP date) of each object, and the token of the next page."""

    objects: list[tuple[str, int, str | None, str | None]]
    next_token: str | None


def parse_page(body: bytes) -> Page:
    """A ListObjectsV2 answer (``encoding-type=url``) read as botocore reads it."""
    import xml.etree.ElementTree as ET  # here: ~12 ms to import, and a worker that only signs GETs never parses

    root = ET.fromstring(body)
    ns = _NS if root.tag.startswith(_NS) else ""
    encoded = (root.findtext(f"{ns}EncodingType") or "").lower() == "url"
    objects = []
    for item in root.iter(f"{ns}Contents"):
        key = item.findtext(f"{ns}Key") or ""
        objects.append(
            (
                unquote_plus(key) if encoded else key,
                int(item.findtext(f"{ns}Size") or 0),
                item.findtext(f"{ns}ETag"),
                http_date(item.findtext(f"{ns}LastModified")),
            )
        )
    truncated = (root.findtext(f"{ns}IsTruncated") or "").lower() == "true"
    token = root.findtext(f"{ns}NextContinuationToken") if truncated else None
    return Page(objects, token or None)


def list_pages(sign: Callable[[dict[str, str]], str], page_size: int, prefix: str, start_after: str,
               fail: Callable[[Reply], errors.DlengineError]) -> Iterator[Page]:  # fmt: skip
    """Every page of a listing: ``sign(params)`` is the presigned URL of
    the bucket with those query parameters; ``fail`` reads a refusal."""
    params = {"list-type": "2", "encoding-type": "url", "max-keys": str(page_size)}
    if prefix:
        params["prefix"] = prefix
    if start_after:
        params["start-after"] = start_after
    while True:
        reply = get(sign(params))
        if reply.status != 200:
            raise fail(reply)
        page = parse_page(reply.body)
        yield page
        if page.next_token is None:
            return
        params["continuation-token"] = page.next_token


def error_code(body: bytes) -> str:
    """The ``<Code>`` of an S3 error answer ('' if none)."""
    import xml.etree.ElementTree as ET

    try:
        return ET.fromstring(body).findtext("Code") or ""
    except ET.ParseError:
        return ""


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@functools.lru_cache(maxsize=1024)
def http_date(value: str | None) -> str | None:
    """``2026-12-01T21:55:30.000Z`` -> ``Tue, 01 Dec 2026 21:55:30 GMT``
    (botocore's datetime as ``sources.s3`` formats it: seconds, UTC; the
    names not from the locale). Kept: the objects of a listing page were
    mostly written in the same few seconds, and parsing a date was half
    of what a listed key cost."""
    if not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:  # Python 3.10 takes 3 or 6 digits of a second only
        try:
            when = dt.datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc)
        except ValueError:
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    u = when.astimezone(dt.timezone.utc)
    return f"{_DAYS[u.weekday()]}, {u.day:02d} {_MONTHS[u.month - 1]} {u.year:04d} {u:%H:%M:%S} GMT"

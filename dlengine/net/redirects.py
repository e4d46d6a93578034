"""Following redirects: where the next hop goes and what it may carry.

Pure functions, shared by every HTTP client dlengine drives: a redirect is
followed at most ``MAX_REDIRECTS`` times, only to http or https, and the
request's secret headers (Authorization, Cookie, an API key...) go only to
the origin the job named; every hop's address is then checked by the
egress policy when its connection opens (``dlengine.net.egress``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote, urljoin, urlsplit

from dlengine import errors

__all__ = ["MAX_REDIRECTS", "NOT_ON_THE_WIRE", "REDIRECT_STATUSES", "headers_for", "next_hop", "same_origin"]

MAX_REDIRECTS = 10
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_SCHEMES = ("http", "https")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def next_hop(url: str, status: int, location: str | None, hops: int) -> str | None:
    """The URL to follow from an answer ``status`` to ``url``, or None when
    it is not a redirect to follow (the answer is then interpreted as it is).
    ``hops`` is how many redirects were followed before this one. Raises
    ``RedirectError`` for an 11th redirect or a target that is not http(s)."""
    if status not in REDIRECT_STATUSES or not location:
        return None
    if hops >= MAX_REDIRECTS:
        raise errors.RedirectError(f"{url}: more than {MAX_REDIRECTS} redirects")
    target = urljoin(url, _on_the_wire(location.strip()))
    scheme = urlsplit(target).scheme.lower()
    if scheme not in _SCHEMES:
        raise errors.RedirectError(f"{url}: HTTP {status} redirects to a {scheme or 'relative'}: link; refused")
    if "\\" in urlsplit(target).netloc or not urlsplit(target).hostname:
        raise errors.RedirectError(f"{url}: HTTP {status} redirects to a malformed link; refused")
    return target


# what a URL cannot carry as it is (a space, a control, anything past
# ASCII): percent-encoded in a Location followed here, and in a job's link
# (``spec.names.normalize_link``), which imports it from here (the lighter
# module: a worker's start imports this one, not the spec package)
NOT_ON_THE_WIRE = re.compile(r"[^\x21-\x7e]")


def _on_the_wire(location: str) -> str:
    """A Location as the next request sends it, as curl and browsers do:
    a space or a byte past ASCII (the raw UTF-8 of a non-ASCII name, which
    some servers send; header lines are read as Latin-1, a character a
    byte) percent-encoded. libcurl refuses a space, and pycurl cannot pass
    on a URL that is not ASCII at all."""
    return NOT_ON_THE_WIRE.sub(lambda char: quote(_byte_of(char.group())), location)


def _byte_of(char: str) -> bytes:
    """What a header character stands for: the byte it was read from
    (Latin-1), or, past Latin-1 (a Location not read from the wire), its UTF-8."""
    return char.encode("latin-1") if ord(char) < 256 else char.encode("utf-8")


def same_origin(a: str, b: str) -> bool:
    """Whether two URLs share scheme, host and port (default ports filled in)."""
    pa, pb = urlsplit(a), urlsplit(b)
    return _origin(pa.scheme, pa.hostname, pa.port) == _origin(pb.scheme, pb.hostname, pb.port)


def _origin(scheme: str, host: str | None, port: int | None) -> tuple[str, str, int | None]:
    scheme = scheme.lower()
    return scheme, (host or "").lower().rstrip("."), port or _DEFAULT_PORTS.get(scheme)


def headers_for(origin_url: str, target: str, headers: Mapping[str, str]) -> dict[str, str]:
    """The headers a hop to ``target`` carries: all of them on the job's own
    origin, none of the secret ones anywhere else (a CDN, another host)."""
    if same_origin(origin_url, target):
        return dict(headers)
    from dlengine.spec.names import is_secret_header  # here: the spec package is heavy for a worker's start

    return {name: value for name, value in headers.items() if not is_secret_header(name)}

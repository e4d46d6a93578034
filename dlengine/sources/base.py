"""The source interface every backend implements.

Sources know nothing of the ledger, progress or throttling: they turn a key
into metadata or a byte stream, and translate their library's exceptions into
dlengine's error classes (``dlengine.errors``) in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol, TypedDict

from dlengine.errors import DlengineError
from dlengine.records import field, frozen


@frozen
class ObjectInfo:
    """Metadata of one source object. ``checksums`` maps an algorithm
    (md5, crc32c, sha256, sha1, crc32, ...) to its lowercase hex digest."""

    key: str
    size: int | None = None
    etag: str | None = None
    version: str | None = None
    last_modified: str | None = None
    checksums: Mapping[str, str] = field(default_factory=dict)

    @property
    def validator(self) -> str | None:
        """What If-Range can carry: the ETag if strong, else Last-Modified."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified


class Selection(TypedDict):
    """What a lister whose listing has one version (a Hub repository at a
    commit) selects beside prefix and suffix: part of a listing's key."""

    source: str  # the link of the listed root
    include: list[str]
    exclude: list[str]


@frozen
class Request:
    """How to open one object. ``offset`` > 0 asks for the rest from there,
    valid only while the source still matches ``if_range``."""

    key: str
    offset: int = 0
    if_range: str | None = None
    if_none_match: str | None = None  # ETag of the stored copy
    if_modified_since: str | None = None  # Last-Modified of the stored copy
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 60.0


Refine = Callable[[ObjectInfo, Mapping[str, str]], ObjectInfo]
"""What a source adds to the generic reading of an answer's headers (its
version header, which checksums apply): the same ``ObjectInfo`` as its SDK."""


@frozen
class SignedGet:
    """A cloud object's GET as plain HTTP, so the libcurl loop can fetch it:
    ``url`` (a presigned one carries its credential in the query: a secret,
    never stored or shown unredacted) and ``headers`` (signed ones and a
    bearer token: sent only to the URL's own origin); ``refine`` reads the
    answer's headers as the source's SDK does."""

    url: str
    headers: Mapping[str, str]
    refine: Refine
    # the source answers a ranged GET with the object's own ETag (S3, Azure): a
    # large object's first request may then ask for its first segment only
    ranged: bool = False


class Stream(Protocol):
    """An open download. ``offset`` is where the body starts: the requested
    offset, or 0 when the source sent the whole object instead."""

    info: ObjectInfo
    offset: int
    not_modified: bool

    def chunks(self, size: int) -> Iterator[bytes]: ...

    def close(self) -> None: ...


Translate = Callable[[BaseException, str], "DlengineError | None"]


@contextmanager
def translating(translate: Translate, what: str) -> Iterator[None]:
    """Run SDK calls; their exceptions leave as dlengine errors through the
    source's one ``translate`` (which returns None for exceptions that are
    not the SDK's or the network's: those are bugs and stay as they are)."""
    try:
        yield
    except DlengineError:
        raise
    except Exception as exc:
        mapped = translate(exc, what)
        if mapped is None:
            raise
        raise mapped from exc


class ReadableStream:
    """An SDK's download body (anything with ``read(n)`` and ``close()``),
    read through the source's error translation ``guard(key)``. ``body``
    is None for a 304-style "not modified" answer."""

    def __init__(
        self,
        body: Any,
        info: ObjectInfo,
        offset: int,
        guard: Callable[[str], AbstractContextManager[None]],
        not_modified: bool = False,
    ) -> None:
        self._body = body
        self._guard = guard
        self.info = info
        self.offset = offset
        self.not_modified = not_modified

    def chunks(self, size: int) -> Iterator[bytes]:
        if self._body is None:
            return
        with self._guard(self.info.key):
            while data := self._body.read(size):
                yield data

    def close(self) -> None:
        if self._body is not None:
            self._body.close()


class Source(Protocol):
    def stat(self, key: str, headers: Mapping[str, str] | None = None, timeout: float = 60.0) -> ObjectInfo: ...

    def list(self, prefix: str = "", suffix: str = "") -> Iterator[ObjectInfo]: ...

    def open(self, request: Request) -> Stream: ...


def installed(package: str) -> bool:
    """Whether a package (``google.cloud.storage``) can be imported, found
    without importing it or its parents: ``find_spec`` of a dotted name
    imports the namespace packages above it (``google``, ``azure``), which
    would then show in every worker. A package directory on ``sys.path``
    answers; else (zip imports, other finders) ``find_spec`` decides."""
    import os
    import sys

    parts = package.split(".")
    for entry in sys.path:
        if os.path.isfile(os.path.join(entry or ".", *parts, "__init__.py")):
            return True
    import importlib.util

    try:
        return importlib.util.find_spec(package) is not None
    except ImportError:  # no parent package at all
        return False

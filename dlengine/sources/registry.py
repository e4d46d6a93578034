"""Which source serves a link, one instance of each per process."""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

from dlengine import errors
from dlengine.sources.base import Source
from dlengine.sources.http import HTTPSource

_lock = threading.Lock()
_instances: dict[str, Source] = {}

# Without the provider's SDK a cloud link is fetched over public HTTPS.
_PUBLIC_HTTPS = {
    "gs": "https://storage.googleapis.com/{bucket}/{key}",
    "s3": "https://{bucket}.s3.amazonaws.com/{key}",
}


def _http(pool_size: int) -> Source:
    with _lock:
        if "http" not in _instances:
            _instances["http"] = HTTPSource(pool_size=pool_size)
        return _instances["http"]


def resolve(link: str, pool_size: int = 16) -> tuple[Source, str]:
    """(source, key) for a link."""
    parts = urlsplit(link)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return _http(pool_size), link
    if scheme in _PUBLIC_HTTPS:
        url = _PUBLIC_HTTPS[scheme].format(bucket=parts.netloc, key=parts.path.lstrip("/"))
        return _http(pool_size), url
    raise errors.PermanentError(f"{link}: no source for scheme {scheme!r} yet")

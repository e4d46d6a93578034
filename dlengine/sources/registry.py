"""Which source serves a link, one instance of each per process, and which
lister lists a remote bucket (provider -> factory, pluggable).

Source modules are imported when a link or a listing needs them: a
supervisor listing an S3 bucket does not import the Hub's, urllib3 (the
HTTP source) or the other clouds' (~0.2 s of a small job's start)."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from dlengine import errors, providers
from dlengine.sources.base import ObjectInfo, Source
from dlengine.spec.model import HubOptions

_lock = threading.Lock()
_instances: dict[str, Source] = {}

# Without the provider's SDK a cloud link is fetched over public HTTPS.
_PUBLIC_HTTPS = {
    "gs": "https://storage.googleapis.com/{bucket}/{key}",
    "s3": "https://{bucket}.s3.amazonaws.com/{key}",
}


class Lister(Protocol):
    """A remote bucket as a backend job sees it: a paged listing, and the
    link (a row's source) of each listed key."""

    def list(self, prefix: str = "", suffix: str = "", start_after: str = "") -> Iterator[ObjectInfo]: ...

    def link(self, key: str) -> str: ...


# link scheme -> (SDK module, source class), imported when needed; bucket provider -> link scheme
_CLOUD: dict[str, tuple[str, str]] = {
    "s3": ("dlengine.sources.s3", "S3Source"),
    "gs": ("dlengine.sources.gcs", "GCSSource"),
    "az": ("dlengine.sources.azure", "AzureSource"),
}
PROVIDER_SCHEMES = {p.value: p.scheme or "" for p in providers.WRITE_THROUGH}

ListerFactory = Callable[[str, HubOptions], Lister]  # (bucket, a Hub repository's selection)
_LISTERS: dict[str, ListerFactory] = {}


def _http(pool_size: int) -> Source:
    from dlengine.sources.http import HTTPSource

    with _lock:
        if "http" not in _instances:
            _instances["http"] = HTTPSource(pool_size=pool_size)
        return _instances["http"]


def _hf(pool_size: int) -> Source:
    from dlengine.sources import hf

    with _lock:
        if "hf" not in _instances:
            _instances["hf"] = hf.HFSource(pool_size=pool_size)
        return _instances["hf"]


def split_cloud_link(link: str) -> tuple[str, str, str]:
    """``s3://bucket/some/key`` -> (scheme, bucket, key); keys are literal
    (no percent-decoding), as in the providers' own tools."""
    scheme, _, rest = link.partition("://")
    bucket, _, key = rest.partition("/")
    return scheme.lower(), bucket, key


def cloud_module(scheme: str) -> Any:
    """The SDK module of a cloud link scheme (``s3``, ``gs``, ``az``)."""
    return importlib.import_module(_CLOUD[scheme][0])


def cloud_source(scheme: str, bucket: str) -> Any:
    """The SDK source of one bucket (cached per process); raises
    ``MissingExtraError`` naming the extra when the SDK is missing."""
    module = cloud_module(scheme)
    factory = getattr(module, _CLOUD[scheme][1])
    if not module.available():
        raise errors.MissingExtraError(f"{scheme}:// buckets need the provider's SDK: {module.EXTRA}")
    with _lock:
        name = f"{scheme}://{bucket}"
        if name not in _instances:
            _instances[name] = factory(bucket)
        return _instances[name]


def resolve(link: str, pool_size: int = 16) -> tuple[Source, str]:
    """(source, key) for a link."""
    parts = urlsplit(link)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return _http(pool_size), link
    if scheme in _CLOUD:
        scheme, bucket, key = split_cloud_link(link)
        if cloud_module(scheme).available() or scheme not in _PUBLIC_HTTPS:
            return cloud_source(scheme, bucket), key
        # the key percent-encoded, as the providers' own URLs carry it: a space, '?', '#' or 'é' in it
        # would otherwise be a bad URL (libcurl: "URL rejected"), a query, a fragment, or not ASCII at all
        return _http(pool_size), _PUBLIC_HTTPS[scheme].format(bucket=bucket, key=quote(key, safe="/"))
    if scheme == "hf":
        from dlengine.sources import hf

        return _hf(pool_size), hf.resolve_url(link)
    raise errors.PermanentError(f"{link}: no source for scheme {scheme!r} yet")


def register_lister(provider: str, factory: ListerFactory) -> None:
    """Plug in the listing of a backend provider (e.g. ``hf``)."""
    _LISTERS[provider] = factory


def lister(provider: str, bucket: str, options: HubOptions | None = None) -> Lister:
    """The lister of a backend job's remote bucket."""
    if provider in _LISTERS:
        return _LISTERS[provider](bucket, options or HubOptions())
    if provider in PROVIDER_SCHEMES:
        source: Lister = cloud_source(PROVIDER_SCHEMES[provider], bucket)
        return source
    raise errors.PermanentError(f"provider {provider!r} cannot be listed yet")


def _hub_lister(bucket: str, options: HubOptions) -> Lister:
    from dlengine.sources import hf

    return hf.HubLister(bucket, options)


register_lister(providers.Provider.HF, _hub_lister)

"""Which source serves a link, one instance of each per process, and which
lister lists a remote bucket (provider -> factory, pluggable)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol
from urllib.parse import urlsplit

from dlengine import errors, providers
from dlengine.sources import azure, gcs, hf, s3
from dlengine.sources.base import ObjectInfo, Source
from dlengine.sources.http import HTTPSource
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


# link scheme -> (SDK module, source class); bucket provider -> link scheme
_CLOUD: dict[str, tuple[Any, Callable[..., Any]]] = {
    "s3": (s3, s3.S3Source),
    "gs": (gcs, gcs.GCSSource),
    "az": (azure, azure.AzureSource),
}
PROVIDER_SCHEMES = {p.value: p.scheme or "" for p in providers.WRITE_THROUGH}

ListerFactory = Callable[[str, HubOptions], Lister]  # (bucket, a Hub repository's selection)
_LISTERS: dict[str, ListerFactory] = {}


def _http(pool_size: int) -> Source:
    with _lock:
        if "http" not in _instances:
            _instances["http"] = HTTPSource(pool_size=pool_size)
        return _instances["http"]


def _hf(pool_size: int) -> Source:
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
    return _CLOUD[scheme][0]


def cloud_source(scheme: str, bucket: str) -> Any:
    """The SDK source of one bucket (cached per process); raises
    ``MissingExtraError`` naming the extra when the SDK is missing."""
    module, factory = _CLOUD[scheme]
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
        if _CLOUD[scheme][0].available() or scheme not in _PUBLIC_HTTPS:
            return cloud_source(scheme, bucket), key
        return _http(pool_size), _PUBLIC_HTTPS[scheme].format(bucket=bucket, key=key)
    if scheme == "hf":
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


register_lister(providers.Provider.HF, hf.HubLister)

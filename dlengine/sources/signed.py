"""Cloud GETs as signed HTTP requests, so that S3, GCS and Azure objects go
through the libcurl loop like plain links (``engine.curl``) instead of the
SDKs' download calls.

``signed_get(link)`` asks the link's source (``s3://``, ``gs://``,
``az://``) for its ``SignedGet``: a presigned URL (S3: SigV4 in the query;
Azure: a SAS), or a URL with a bearer token header (GCS). The worker's
ledger thread calls it when it hands an object to the loop; None means
"the SDK does it" (no SDK, no credentials the engine can use, a key a URL
cannot carry): today's path, unchanged. The SDKs stay for listing, HEAD,
uploads and write-through.

The ledger and every message keep the plain ``s3://`` link; the signed URL
lives only in the loop's transfer (``redact`` hides its credential should
it ever reach a message).
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any

from dlengine import errors
from dlengine.sources.base import ObjectInfo, SignedGet

__all__ = ["signed_get"]

log = logging.getLogger("dlengine.signed")

# scheme -> (module, source class): imported when a link needs it (the
# registry's instances are not shared: a source object holds no state of
# its own, its module keeps the clients and presigners)
_SOURCES = {"s3": ("dlengine.sources.s3", "S3Source"), "gs": ("dlengine.sources.gcs", "GCSSource"),
            "az": ("dlengine.sources.azure", "AzureSource")}  # fmt: skip
_lock = threading.Lock()
_instances: dict[tuple[str, str], Any] = {}
_modules: dict[str, Any] = {}  # scheme -> its module, once imported (import_module: ~1 µs an object)


def signed_get(link: str, listed: ObjectInfo | None = None) -> SignedGet | None:
    """The signed GET of a cloud link, or None to use the SDK's path.
    ``listed``: what a listing said of the object (backend jobs), for
    sources whose answer lacks some of it."""
    scheme, sep, rest = link.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _SOURCES:
        return None
    bucket, _, key = rest.partition("/")  # registry.split_cloud_link's reading: keys literal
    module = _modules.get(scheme) or _modules.setdefault(scheme, importlib.import_module(_SOURCES[scheme][0]))
    if not module.available():
        return None  # the registry's answer (public HTTPS, or the missing extra) stands
    try:
        get: SignedGet | None = _source(scheme, bucket, module).signed_get(key, listed)
    except errors.DlengineError as exc:
        # the SDK path meets the same problem and reports it as the outcome
        log.debug("%s: no signed GET (%s); the SDK fetches it", link, exc)
        return None
    return get


def _source(scheme: str, bucket: str, module: Any) -> Any:
    """One source per bucket and process, as ``registry.cloud_source`` keeps."""
    source = _instances.get((scheme, bucket))  # (made once, then only read: no lock)
    if source is not None:
        return source
    with _lock:
        source = _instances.get((scheme, bucket))
        if source is None:
            source = _instances[(scheme, bucket)] = getattr(module, _SOURCES[scheme][1])(bucket)
        return source

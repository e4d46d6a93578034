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

import logging

from dlengine import errors
from dlengine.sources.base import ObjectInfo, SignedGet

__all__ = ["signed_get"]

log = logging.getLogger("dlengine.signed")

_SCHEMES = ("s3", "gs", "az")


def signed_get(link: str, listed: ObjectInfo | None = None) -> SignedGet | None:
    """The signed GET of a cloud link, or None to use the SDK's path.
    ``listed``: what a listing said of the object (backend jobs), for
    sources whose answer lacks some of it."""
    scheme, sep, _ = link.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        return None
    from dlengine.sources import registry  # here: it imports every source module

    scheme, bucket, key = registry.split_cloud_link(link)
    module = registry.cloud_module(scheme)
    if not module.available():
        return None  # the registry's answer (public HTTPS, or the missing extra) stands
    try:
        sign = getattr(registry.cloud_source(scheme, bucket), "signed_get", None)
        get: SignedGet | None = sign(key, listed) if sign is not None else None
    except errors.DlengineError as exc:
        # the SDK path meets the same problem and reports it as the outcome
        log.debug("%s: no signed GET (%s); the SDK fetches it", link, exc)
        return None
    return get

"""GCS GETs and listings without google-cloud-storage: the endpoint and
the bearer token the SDK's client would use, and objects.list pages of
the JSON API through a plain pycurl handle (``s3plain.get``).

google-cloud-storage costs a worker or a supervisor ~0.3 s of CPU to
import (requests, google-api-core, protobuf), and its refresh transport
(google.auth.transport.requests) ~0.25 s more, before the first GET. What
a GET needs is an endpoint and, with credentials, one header:

- ``STORAGE_EMULATOR_HOST`` set: that endpoint, anonymous (the SDK's
  client does the same); nothing of google.* is imported.
- otherwise google-auth's ``default()`` (imported here, lazily: ~15 ms)
  with the storage client's scopes; no credentials anywhere: anonymous
  (the SDK's ``create_anonymous_client``, public buckets). A token is
  refreshed through ``_CurlTransport`` (pycurl, no requests), under one
  lock, and applied by the credentials themselves (``before_request``:
  the token, a quota project).
- ``API_ENDPOINT_OVERRIDE`` is the endpoint as in the SDK; mutual TLS
  (``GOOGLE_API_USE_CLIENT_CERTIFICATE=true``) or credentials of another
  universe: None, the SDK's path (which says what is wrong).

The token lives in this process's memory and in the header of the
transfers to the endpoint's origin only (``engine.curl``); it is never
logged. The token endpoint (the metadata server on GCE) is asked as
google-auth asks it: the egress policy is for download links, not for
the credential chain.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode

from dlengine import errors
from dlengine.records import frozen
from dlengine.sources import s3plain
from dlengine.sources.base import ObjectInfo
from dlengine.sources.checksums import b64_to_hex

__all__ = ["Access", "access", "error_of", "list_pages", "media_url", "object_info", "status_error"]

DEFAULT_ENDPOINT = "https://storage.googleapis.com"
UNIVERSE = "googleapis.com"
# google.cloud.storage.Client.SCOPE: the token's scopes are the SDK client's
SCOPES = (
    "https://www.googleapis.com/auth/devstorage.full_control",
    "https://www.googleapis.com/auth/devstorage.read_only",
    "https://www.googleapis.com/auth/devstorage.read_write",
)
_ENV = ("STORAGE_EMULATOR_HOST", "API_ENDPOINT_OVERRIDE", "GOOGLE_API_USE_CLIENT_CERTIFICATE",
        "GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG")  # fmt: skip

_lock = threading.Lock()
_cache: dict[tuple[str | None, ...], Access | None] = {}


@frozen(repr=False)
class Access:
    """Where GETs go and how they are authorized: ``credentials`` None is
    anonymous. The repr names no credential."""

    endpoint: str
    credentials: Any = None

    def __repr__(self) -> str:
        return f"Access(endpoint={self.endpoint!r}, anonymous={self.credentials is None})"

    def headers(self, url: str) -> dict[str, str]:
        """The headers that authorize a request of ``url`` ({} anonymous),
        the token refreshed first when it expired."""
        headers: dict[str, str] = {}
        if self.credentials is None:
            return headers
        from google.auth.exceptions import GoogleAuthError

        try:
            with _lock:  # one refresh at a time; the others then find it valid
                self.credentials.before_request(_CurlTransport(), "GET", url, headers)
        except GoogleAuthError as exc:
            raise errors.SourceDeniedError(f"gs://: credentials: {exc}") from None
        return headers


def access() -> Access | None:
    """The process's endpoint and credentials (read once per environment),
    or None when the SDK must serve (mutual TLS, another universe, a
    credential google-auth cannot load)."""
    key = tuple(os.environ.get(name) for name in _ENV)
    with _lock:
        if key not in _cache:
            _cache.clear()
            _cache[key] = _resolve()
        return _cache[key]


def _resolve() -> Access | None:
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if emulator:
        return Access(emulator.rstrip("/")) if emulator.startswith(("http://", "https://")) else None
    if os.environ.get("GOOGLE_API_USE_CLIENT_CERTIFICATE", "").lower() == "true":
        return None
    endpoint = (os.environ.get("API_ENDPOINT_OVERRIDE") or DEFAULT_ENDPOINT).rstrip("/")
    try:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError, GoogleAuthError
    except ImportError:
        return None
    try:
        credentials, _project = google.auth.default(scopes=SCOPES)
    except DefaultCredentialsError:
        return Access(endpoint)  # nothing anywhere: anonymous, public buckets
    except (GoogleAuthError, ValueError, OSError):
        return None  # the SDK's client meets it too, and says so
    if getattr(credentials, "universe_domain", UNIVERSE) != UNIVERSE:
        return None
    return Access(endpoint, credentials)


def media_url(endpoint: str, bucket: str, key: str) -> str:
    """The JSON API's media download of one object (the SDK's URL)."""
    return f"{endpoint}/download/storage/v1/b/{quote(bucket, safe='')}/o/{quote(key, safe='')}?alt=media"


def list_pages(
    where: Access, bucket: str, prefix: str, start_after: str, page_size: int
) -> Iterator[list[dict[str, Any]]]:
    """The items of every objects.list page (``startOffset`` from
    ``start_after``, as the SDK's ``start_offset``); a refusal raises the
    error the SDK's path would."""
    params = {"projection": "noAcl", "maxResults": str(page_size)}
    if prefix:
        params["prefix"] = prefix
    if start_after:
        params["startOffset"] = start_after
    base = f"{where.endpoint}/storage/v1/b/{quote(bucket, safe='')}/o"
    what = f"gs://{bucket}/{prefix}"
    while True:
        url = f"{base}?{urlencode(params)}"
        reply = s3plain.get(url, headers=where.headers(url))
        if reply.status != 200:
            raise status_error(reply.status, _message(reply.body), what)
        try:
            page = json.loads(reply.body)
        except ValueError:
            raise errors.ServerBusyError(f"{what}: a listing page that is not JSON") from None
        yield list(page.get("items") or [])
        token = page.get("nextPageToken")
        if not token:
            return
        params["pageToken"] = str(token)


def object_info(item: Mapping[str, Any]) -> ObjectInfo:
    """A listed object as ``gcs._info`` reads the SDK's blob."""
    found = {}
    for algo, field in (("md5", "md5Hash"), ("crc32c", "crc32c")):
        value = item.get(field)
        digest = b64_to_hex(str(value)) if value else None
        if digest:
            found[algo] = digest
    size, generation = item.get("size"), item.get("generation")
    return ObjectInfo(
        key=str(item.get("name", "")),
        size=int(size) if size is not None else None,
        etag=item.get("etag"),
        version=str(generation) if generation else None,
        last_modified=s3plain.http_date(item.get("updated")),
        checksums=found,
    )


def status_error(status: int, message: str, what: str) -> errors.DlengineError:
    """An HTTP status of the JSON API as a dlengine error."""
    return error_of(status, f"{what}: HTTP {status} {message}".rstrip())


def error_of(status: int, reason: str) -> errors.DlengineError:
    """The error class of a GCS status, the one mapping for the plain
    requests and the SDK's exceptions (``gcs._api_error``)."""
    if status == 404:
        return errors.SourceNotFoundError(reason)
    if status in (401, 403):
        return errors.SourceDeniedError(reason)
    if status in (412, 416):
        return errors.SourceChangedError(reason)
    if status in (408, 429) or status >= 500:
        return errors.ServerBusyError(reason)
    return errors.SourceHTTPError(reason)


def _message(body: bytes) -> str:
    """The JSON API's ``error.message`` ('' if none)."""
    try:
        return str(json.loads(body)["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError):
        return ""


class _Response:
    """What google-auth reads of an answer (``transport.Response``)."""

    def __init__(self, reply: s3plain.Reply) -> None:
        self.status = reply.status
        self.headers = dict(reply.headers)
        self.data = reply.body


class _CurlTransport:
    """google-auth's ``transport.Request`` over pycurl: a token refresh
    without importing requests. Network failures are google-auth's
    ``TransportError`` (its refresh retries and reports them)."""

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **_kwargs: Any,
    ) -> _Response:
        from google.auth.exceptions import TransportError

        data = body.encode() if isinstance(body, str) else body
        try:
            return _Response(s3plain.get(url, method, timeout or 120.0, headers, data))
        except errors.DlengineError as exc:
            raise TransportError(str(exc)) from None  # type: ignore[no-untyped-call]

"""Google Cloud Storage through google-cloud-storage.

Credentials and endpoint come only from the SDK's conventions:
``STORAGE_EMULATOR_HOST`` (then anonymous), ``GOOGLE_APPLICATION_CREDENTIALS``
or the other application-default credentials; without any, the anonymous
client reads public buckets. Nothing of it is written to the ledger.

The SDK is imported lazily: without it ``gs://`` links go over public HTTPS
(see ``registry``) and listing a bucket raises ``MissingExtraError``. A
worker's signed GETs and a backend job's listing do not import it at all
where ``gcsplain`` can read the endpoint and credentials (the emulator,
google-auth's default credentials, none): stat, open, uploads and the
rest stay here.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from dlengine import errors
from dlengine.sources import checksums, gcsplain
from dlengine.sources.base import ObjectInfo, ReadableStream, Request, SignedGet, installed, translating

EXTRA = "pip install 'dlengine[gcs]'"
SCHEME = "gs"
READ_CHUNK = 8 << 20  # bytes per ranged GET of the blob reader

_lock = threading.Lock()
_client: list[Any] = []


def available() -> bool:
    """google-cloud-storage is installed (found, not imported: a worker's
    GETs and a supervisor's listing go without it, ``gcsplain``)."""
    if not _available:
        _available.append(installed("google.cloud.storage"))
    return _available[0]


_available: list[bool] = []


def client() -> Any:
    """One storage client per process."""
    with _lock:
        if not _client:
            _client.append(_new_client())
        return _client[0]


def _new_client() -> Any:
    try:
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import storage
    except ImportError:
        raise errors.MissingExtraError(f"Google Cloud Storage needs google-cloud-storage: {EXTRA}") from None
    try:
        return storage.Client()
    except DefaultCredentialsError:
        # no credentials anywhere: public buckets still read anonymously
        return storage.Client.create_anonymous_client()


def translated(what: str) -> AbstractContextManager[None]:
    """Run SDK calls; their exceptions leave as dlengine errors."""
    return translating(translate, what)


def translate(exc: BaseException, what: str) -> errors.DlengineError | None:
    """The SDK's exceptions -> dlengine's error classes (the one place);
    None for exceptions that are not the SDK's or the network's."""
    import requests
    from google.api_core import exceptions as gx
    from google.auth import exceptions as auth

    if isinstance(exc, gx.GoogleAPICallError):
        return _api_error(exc, what)
    if isinstance(exc, auth.GoogleAuthError):
        return errors.SourceDeniedError(f"{what}: credentials: {exc}")
    if isinstance(exc, requests.Timeout | TimeoutError):
        return errors.SourceTimeoutError(f"{what}: timed out ({exc})")
    if isinstance(exc, requests.RequestException | ConnectionError | OSError):
        return errors.SourceConnectionError(f"{what}: {exc}")
    return None


def _api_error(exc: Any, what: str) -> errors.DlengineError:
    status = int(exc.code or 0)
    return gcsplain.error_of(status, f"{what}: HTTP {status} {exc.message}")


class GCSSource:
    """One bucket. Keys are object names inside it."""

    def __init__(self, bucket: str, page_size: int = 1000) -> None:
        self.bucket = bucket
        self.page_size = page_size

    def link(self, key: str) -> str:
        return f"{SCHEME}://{self.bucket}/{key}"

    def stat(self, key: str, headers: object = None, timeout: float = 60.0) -> ObjectInfo:
        return _info(self._blob(key, timeout))

    def list(self, prefix: str = "", suffix: str = "", start_after: str = "") -> Iterator[ObjectInfo]:
        """Paged objects.list: prefix and start offset go to the server, the
        suffix is filtered here (and keys up to ``start_after``, in case a
        server ignores the offset)."""
        where = gcsplain.access()
        if where is not None:  # the JSON API through pycurl: no SDK in the supervisor
            for items in gcsplain.list_pages(where, self.bucket, prefix, start_after, self.page_size):
                for item in items:
                    info = gcsplain.object_info(item)
                    if info.key > start_after and info.key.endswith(suffix):
                        yield info
            return
        args: dict[str, Any] = {"prefix": prefix or None, "page_size": self.page_size}
        if start_after:
            args["start_offset"] = start_after
        with translated(f"{SCHEME}://{self.bucket}/{prefix}"):
            for blob in client().list_blobs(self.bucket, **args):
                if blob.name > start_after and blob.name.endswith(suffix):
                    yield _info(blob)

    def open(self, request: Request) -> ReadableStream:
        blob = self._blob(request.key, request.timeout)
        info = _info(blob)
        if request.if_none_match and request.offset == 0 and blob.etag == request.if_none_match:
            return ReadableStream(None, info, 0, translated, not_modified=True)
        # If-Range: resume only the very object the kept bytes came from
        offset = request.offset if request.if_range in (blob.etag, info.validator) else 0
        with translated(self.link(request.key)):
            reader = blob.open(
                "rb",
                chunk_size=READ_CHUNK,
                raw_download=True,
                if_generation_match=blob.generation,
                timeout=request.timeout,
            )
            if offset:
                reader.seek(offset)
        return ReadableStream(reader, info, offset, translated)

    def signed_get(self, key: str, listed: ObjectInfo | None = None) -> SignedGet | None:
        """The JSON API's media download of ``key`` for the libcurl loop,
        with the client's credentials as a bearer token (refreshed here
        when expired; none for the anonymous client or the emulator):
        ``gcsplain``'s, without the SDK, else the SDK client's."""
        where = gcsplain.access()
        if where is not None:
            url = gcsplain.media_url(where.endpoint, self.bucket, key)
            return SignedGet(url, where.headers(url), _Refine(listed))
        with translated(self.link(key)):
            sdk = client()
            headers = _bearer(sdk)
        if headers is None:
            return None
        base = str(sdk.api_endpoint or "").rstrip("/")
        if not base.startswith(("http://", "https://")):
            return None
        return SignedGet(gcsplain.media_url(base, self.bucket, key), headers, _Refine(listed))

    def upload(
        self, key: str, data: Path | bytes, md5_hex: str | None = None, metadata: dict[str, str] | None = None
    ) -> None:
        """Store a verified local file (or its bytes, held in memory) as
        ``key``, with ``metadata`` (the blob's custom metadata) when given."""
        blob = client().bucket(self.bucket).blob(key)
        if metadata:
            blob.metadata = metadata
        with translated(self.link(key)):
            if isinstance(data, bytes):
                blob.upload_from_string(data, checksum="md5")
            else:
                blob.upload_from_filename(str(data), checksum="md5")

    def metadata(self, key: str) -> dict[str, str] | None:
        """The custom metadata of a stored blob; None if there is no such blob."""
        try:
            blob = self._blob(key, 60.0)
        except errors.SourceNotFoundError:
            return None
        return {str(k).lower(): str(v) for k, v in (blob.metadata or {}).items()}

    def delete(self, key: str) -> None:
        with translated(self.link(key)):
            client().bucket(self.bucket).blob(key).delete()

    def _blob(self, key: str, timeout: float) -> Any:
        with translated(self.link(key)):
            blob = client().bucket(self.bucket).get_blob(key, timeout=timeout)
        if blob is None:
            raise errors.SourceNotFoundError(f"{self.link(key)}: HTTP 404 not found")
        return blob


def _bearer(sdk: Any) -> dict[str, str] | None:
    """The Authorization header of the client's credentials ({} when
    anonymous); None for credentials that cannot make one."""
    from google.auth.credentials import AnonymousCredentials

    credentials = sdk._credentials  # the client's own (no public accessor)
    if credentials is None or isinstance(credentials, AnonymousCredentials):
        return {}
    if not getattr(credentials, "valid", False) or not getattr(credentials, "token", None):
        from google.auth.transport.requests import Request as AuthRequest

        with _lock:  # one refresh at a time; the others then find it valid
            if not credentials.valid:
                credentials.refresh(AuthRequest())
    token = getattr(credentials, "token", None)
    return {"Authorization": f"Bearer {token}"} if token else None


@dataclasses.dataclass(frozen=True)
class _Refine:
    """A media download's answer read as ``_info`` reads the blob: the
    generation header is the version; where the answer lacks what the
    listing said (the emulator sends no ETag or generation) and is the
    listed object (same size and checksum), the listing's values stand."""

    listed: ObjectInfo | None

    def __call__(self, info: ObjectInfo, headers: Mapping[str, str]) -> ObjectInfo:
        found = {k: v for k, v in info.checksums.items() if k in ("md5", "crc32c")}
        if "md5=" not in headers.get("x-goog-hash", ""):
            found.pop("md5", None)  # a composite object: an ETag that looks like an MD5 is none
        version = headers.get("x-goog-generation") or None
        etag = info.etag
        listed = self.listed
        if listed is not None and self._same(listed, info, found, version):
            etag, version = listed.etag or etag, listed.version or version
        return dataclasses.replace(info, etag=etag, version=version, checksums=found)

    @staticmethod
    def _same(listed: ObjectInfo, info: ObjectInfo, found: Mapping[str, str], version: str | None) -> bool:
        if version is not None:
            return version == listed.version
        shared = [algo for algo in found if algo in listed.checksums]
        return info.size == listed.size and bool(shared) and all(found[a] == listed.checksums[a] for a in shared)


def _info(blob: Any) -> ObjectInfo:
    found = {}
    for algo, value in (("md5", blob.md5_hash), ("crc32c", blob.crc32c)):
        digest = checksums.b64_to_hex(value) if value else None
        if digest:
            found[algo] = digest
    return ObjectInfo(
        key=blob.name,
        size=int(blob.size) if blob.size is not None else None,
        etag=blob.etag,
        version=str(blob.generation) if blob.generation else None,
        last_modified=_http_date(blob.updated),
        checksums=found,
    )


def _http_date(value: datetime | None) -> str | None:
    if not isinstance(value, datetime):
        return None
    return format_datetime(value.astimezone(timezone.utc), usegmt=True)

"""S3 (and S3-compatible stores) through boto3.

Credentials and endpoint come only from boto3's own chain: ``AWS_ENDPOINT_URL``
(or ``AWS_ENDPOINT_URL_S3``), ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE`` and the shared config files, instance roles. Nothing of it
is ever written to the ledger.

boto3 is imported lazily: without it ``s3://`` links go over public HTTPS
(see ``registry``) and listing a bucket raises ``MissingExtraError``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any

from dlengine import errors
from dlengine.sources import checksums
from dlengine.sources.base import ObjectInfo, ReadableStream, Request, translating

EXTRA = "pip install 'dlengine[s3]'"
SCHEME = "s3"
_CHECKSUM_FIELDS = {
    "ChecksumCRC32": "crc32",
    "ChecksumCRC32C": "crc32c",
    "ChecksumSHA1": "sha1",
    "ChecksumSHA256": "sha256",
}
_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "NotFound", "NoSuchVersion"}
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "AllAccessDisabled"}
_BUSY = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling"}

_lock = threading.Lock()
_clients: dict[float, Any] = {}


def available() -> bool:
    try:
        import boto3  # noqa: F401
    except ImportError:
        return False
    return True


def client(timeout: float = 60.0) -> Any:
    """One boto3 S3 client per process and timeout (clients are thread-safe)."""
    with _lock:
        if timeout not in _clients:
            _clients[timeout] = _new_client(timeout)
        return _clients[timeout]


def _new_client(timeout: float) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise errors.MissingExtraError(f"S3 needs boto3: {EXTRA}") from None
    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        max_pool_connections=64,
        retries={"mode": "standard", "max_attempts": 3},
        # dlengine hashes the bytes itself; do not hash them twice
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    with translated("s3"):
        return boto3.session.Session().client("s3", config=config)


def translated(what: str) -> AbstractContextManager[None]:
    """Run SDK calls; their exceptions leave as dlengine errors."""
    return translating(translate, what)


def translate(exc: BaseException, what: str) -> errors.DlengineError | None:
    """botocore's exceptions -> dlengine's error classes (the one place);
    None for exceptions that are not the SDK's or the network's."""
    from botocore import exceptions as bx

    if isinstance(exc, bx.ClientError):
        return _client_error(exc, what)
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return errors.SourceDeniedError(f"{what}: no AWS credentials ({exc})")
    if isinstance(exc, bx.ReadTimeoutError | bx.ConnectTimeoutError | TimeoutError):
        return errors.SourceTimeoutError(f"{what}: timed out ({exc})")
    if isinstance(exc, bx.BotoCoreError | ConnectionError | OSError):
        return errors.SourceConnectionError(f"{what}: {exc}")
    return None


def _client_error(exc: Any, what: str) -> errors.DlengineError:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    reason = f"{what}: {code or 'HTTP ' + str(status)} ({status})"
    if code in _NOT_FOUND or status == 404:
        return errors.SourceNotFoundError(reason)
    if code in _DENIED or status in (401, 403):
        return errors.SourceDeniedError(reason)
    if code in ("PreconditionFailed", "InvalidRange") or status in (412, 416):
        return errors.SourceChangedError(reason)
    if code in _BUSY or status in (408, 429) or status >= 500:
        return errors.ServerBusyError(reason)
    return errors.SourceHTTPError(reason)


def _status(exc: BaseException) -> int:
    response = getattr(exc, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


class S3Source:
    """One bucket. Keys are object keys inside it."""

    def __init__(self, bucket: str, page_size: int = 1000) -> None:
        self.bucket = bucket
        self.page_size = page_size

    def link(self, key: str) -> str:
        return f"{SCHEME}://{self.bucket}/{key}"

    def stat(self, key: str, headers: object = None, timeout: float = 60.0) -> ObjectInfo:
        with translated(self.link(key)):
            response = client(timeout).head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        return _info(key, response)

    def list(self, prefix: str = "", suffix: str = "", start_after: str = "") -> Iterator[ObjectInfo]:
        """Paged ListObjectsV2: the prefix and StartAfter go to the server,
        the suffix is filtered here."""
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        args["PaginationConfig"] = {"PageSize": self.page_size}
        if start_after:
            args["StartAfter"] = start_after
        with translated(f"{SCHEME}://{self.bucket}/{prefix}"):
            for page in client().get_paginator("list_objects_v2").paginate(**args):
                yield from _listed(page.get("Contents", ()), suffix)

    def open(self, request: Request) -> ReadableStream:
        args = _get_args(self.bucket, request)
        try:
            with translated(self.link(request.key)):
                response = client(request.timeout).get_object(**args)
        except errors.SourceChangedError as exc:
            if request.offset > 0 and _status(exc.__cause__ or exc) == 412:
                # If-Range semantics: the object changed, send it whole
                return self.open(Request(request.key, timeout=request.timeout))
            raise
        except errors.SourceHTTPError as exc:
            if _status(exc.__cause__ or exc) == 304:
                unchanged = ObjectInfo(key=request.key, etag=request.if_none_match)
                return ReadableStream(None, unchanged, 0, translated, not_modified=True)
            raise
        offset = request.offset if "ContentRange" in response else 0
        return ReadableStream(response["Body"], _info(request.key, response), offset, translated)

    def upload(self, key: str, path: Path, md5_hex: str | None = None, metadata: dict[str, str] | None = None) -> None:
        """Store a verified local file as ``key`` (multipart when large),
        with ``metadata`` (x-amz-meta-*) when given."""
        extra = {"Metadata": metadata} if metadata else None
        with translated(self.link(key)):
            client().upload_file(str(path), self.bucket, key, ExtraArgs=extra)

    def metadata(self, key: str) -> dict[str, str] | None:
        """The user metadata of a stored object; None if there is no such key."""
        try:
            with translated(self.link(key)):
                response = client().head_object(Bucket=self.bucket, Key=key)
        except errors.SourceNotFoundError:
            return None
        return {str(k).lower(): str(v) for k, v in (response.get("Metadata") or {}).items()}

    def delete(self, key: str) -> None:
        with translated(self.link(key)):
            client().delete_object(Bucket=self.bucket, Key=key)


def _get_args(bucket: str, request: Request) -> dict[str, Any]:
    args: dict[str, Any] = {"Bucket": bucket, "Key": request.key}
    if request.offset > 0:
        args["Range"] = f"bytes={request.offset}-"
        if request.if_range:
            args["IfMatch"] = request.if_range
        return args
    args["ChecksumMode"] = "ENABLED"  # whole-object checksums come with whole bodies only
    if request.if_none_match:
        args["IfNoneMatch"] = request.if_none_match
    elif request.if_modified_since:
        args["IfModifiedSince"] = parsedate_to_datetime(request.if_modified_since)
    return args


def _listed(contents: Any, suffix: str) -> Iterator[ObjectInfo]:
    for item in contents:
        key = str(item["Key"])
        if key.endswith(suffix):
            yield ObjectInfo(
                key=key,
                size=int(item["Size"]),
                etag=item.get("ETag"),
                last_modified=_http_date(item.get("LastModified")),
                checksums=_etag_md5(item.get("ETag"), None),
            )


def _info(key: str, response: dict[str, Any]) -> ObjectInfo:
    found = _etag_md5(response.get("ETag"), response)
    if response.get("ChecksumType") != "COMPOSITE":
        for field, algo in _CHECKSUM_FIELDS.items():
            digest = checksums.b64_to_hex(str(response.get(field) or ""))
            if digest:
                found[algo] = digest
    version = response.get("VersionId")
    return ObjectInfo(
        key=key,
        size=_size(response),
        etag=response.get("ETag"),
        version=version if version and version != "null" else None,
        last_modified=_http_date(response.get("LastModified")),
        checksums=found,
    )


def _etag_md5(etag: str | None, response: dict[str, Any] | None) -> dict[str, str]:
    """The ETag is the MD5 unless multipart (``-N``) or KMS/customer-key encrypted."""
    if response and (response.get("SSECustomerAlgorithm") or response.get("ServerSideEncryption") == "aws:kms"):
        return {}
    md5 = checksums.md5_from_etag(etag)
    return {"md5": md5} if md5 else {}


def _size(response: dict[str, Any]) -> int | None:
    total = str(response.get("ContentRange", "")).rpartition("/")[2]
    if total.isdigit():
        return int(total)
    length = response.get("ContentLength")
    return int(length) if length is not None else None


def _http_date(value: datetime | None) -> str | None:
    if not isinstance(value, datetime):
        return None
    return format_datetime(value.astimezone(timezone.utc), usegmt=True)

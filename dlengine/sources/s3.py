"""S3 (and S3-compatible stores) through boto3.

Credentials and endpoint come only from boto3's own chain: ``AWS_ENDPOINT_URL``
(or ``AWS_ENDPOINT_URL_S3``), ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE`` and the shared config files, instance roles. Nothing of it
is ever written to the ledger. A worker's signed GETs (``signed_get``) read
the common case of that chain without botocore (``awsenv``: static keys and
a custom endpoint), so a worker that only downloads never imports boto3;
anything else is asked of botocore. Clients are cached per process, timeout and
*that chain's variables* (endpoint, keys, profile, region): a process whose
environment changes gets a client for the new store, never the old one.

boto3 is imported lazily: without it ``s3://`` links go over public HTTPS
(see ``registry``) and listing a bucket raises ``MissingExtraError``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from dlengine import errors
from dlengine.records import frozen
from dlengine.sources import awsenv, checksums, s3plain, sigv4
from dlengine.sources.base import ObjectInfo, ReadableStream, Request, SignedGet, translating

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
_BUSY = {
    "SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling", "ThrottlingException",
    "RequestLimitExceeded", "TooManyRequests", "RequestThrottled", "RequestTimeTooSkewed", "OperationAborted",
}  # fmt: skip
# boto3's own chain: a client is bound to what these said when it was made
_CHAIN_VARIABLES = (
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)  # fmt: skip

# one PutObject (with Content-MD5) up to this size; multipart above it
SMALL_UPLOAD = 8 * 1024 * 1024
SDK_ATTEMPTS = 3  # botocore's own tries of a request, before dlengine's retry with backoff

_lock = threading.Lock()
_clients: dict[tuple[float, bytes], Any] = {}
_transfers: dict[bytes, Any] = {}
_presigners: dict[tuple[str, bytes], _Presigner] = {}
# signed with the GET and sent with it: whole-object checksums come back
_SIGNED_HEADERS = {"x-amz-checksum-mode": "ENABLED"}
PRESIGN_EXPIRES = 3600  # seconds; a transfer starts at once (retries sign again)
PUT_EXPIRES = 900  # seconds a presigned PUT is valid: it is sent as soon as it is signed
UPLOAD_TIMEOUT = 60.0  # connect, and no byte moving for this long (the SDK client's default)


def available() -> bool:
    """boto3 is installed (found, not imported: a worker that signs its
    GETs itself never imports it)."""
    global _available
    if _available is None:
        import importlib.util

        _available = importlib.util.find_spec("boto3") is not None
    return _available


_available: bool | None = None


def client(timeout: float = 60.0) -> Any:
    """One boto3 S3 client per process, timeout and credential chain
    (clients are thread-safe)."""
    with _lock:
        return _client_locked(timeout, _chain())


def transfer_manager() -> Any:
    """One s3transfer manager per process (and chain) for multipart
    uploads: its bounded thread pools live as long as the process. boto3's
    ``upload_file`` builds a manager, and starts its threads, on every call:
    a thread per object (and a worker froze in ``Thread.start`` once, see
    docs/scale-out.md)."""
    chain = _chain()
    with _lock:
        if chain not in _transfers:
            from boto3.s3.transfer import TransferConfig, create_transfer_manager

            config = TransferConfig(multipart_threshold=SMALL_UPLOAD, multipart_chunksize=SMALL_UPLOAD)
            _transfers[chain] = create_transfer_manager(_client_locked(60.0, chain), config)
        return _transfers[chain]


_CHAIN_NAMES = tuple(name.encode() for name in _CHAIN_VARIABLES)


def _chain() -> bytes:
    """A digest of the chain's variables (the cache key; no secret kept in
    clear). Asked once per signed GET: read from the environment's bytes
    (``os.environ`` decodes every value: 11 lookups were 40% of a GET's
    signing), where the platform keeps them there."""
    global _chain_seen
    data = getattr(os.environ, "_data", None)
    if os.name != "posix" or not isinstance(data, dict):
        return hashlib.sha256("\0".join(os.environ.get(name, "\1") for name in _CHAIN_VARIABLES).encode()).digest()
    values = tuple(map(data.get, _CHAIN_NAMES))
    seen = _chain_seen
    if seen is not None and seen[0] == values:  # (the environment's own objects: compared by identity first)
        return seen[1]
    digest = hashlib.sha256(b"\0".join(b"\1" if v is None else v for v in values)).digest()
    _chain_seen = (values, digest)
    return digest


# the chain's variables as last read (the environment's own bytes objects,
# no copy: a value set since is another object) and their digest: the
# digest of every signed GET was a join and a SHA-256 (~1.5 us)
_chain_seen: tuple[tuple[bytes | None, ...], bytes] | None = None


def _client_locked(timeout: float, chain: bytes) -> Any:
    if (timeout, chain) not in _clients:
        _clients[(timeout, chain)] = _new_client(timeout)
    return _clients[(timeout, chain)]


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
        retries={"mode": "standard", "max_attempts": SDK_ATTEMPTS},
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
    from boto3.exceptions import S3UploadFailedError
    from botocore import exceptions as bx

    inner = exc.__cause__ or exc.__context__
    if isinstance(exc, S3UploadFailedError) and inner is not None:
        # boto3 raises it while handling the ClientError (5xx, SlowDown): classify that
        return translate(inner, what)
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
    return _classify(code, status, what)


def _classify(code: str, status: int, what: str) -> errors.DlengineError:
    """A store's refusal by its S3 error code and HTTP status (the SDK's
    ``ClientError``, a plain request's and the presigned PUT's answers)."""
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


def _plain_error(what: str, reply: s3plain.Reply) -> errors.DlengineError:
    """A refused plain request, classified as botocore's are."""
    return _classify(s3plain.error_code(reply.body), reply.status, what)


def _status(exc: BaseException) -> int:
    response = getattr(exc, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


Keys = tuple[str, str, str | None]


@frozen(repr=False)
class _Presigner:
    """Where one bucket's objects are and who signs for them: the origin
    and path prefix the SDK's addressing rules give (endpoint_url, region,
    virtual-host or path style), its region, and ``keys``: the current
    (access key, secret, token) of its credential chain, or None."""

    origin: str
    host: str
    prefix: str
    region: str
    keys: Callable[[], Keys | None]
    static: bool  # read without botocore (``awsenv``): path-style, static keys
    gets: sigv4.GetSigner  # the objects' GETs (what their URLs share, kept a second)

    def url(self, key: str) -> str | None:
        keys = self.keys()
        if keys is None:
            return None
        return self.gets.url(key if _UNRESERVED(key) else quote(key, safe="/~"), keys)

    def bucket_url(self, params: Mapping[str, str]) -> str:
        """A presigned GET of the bucket itself with ``params`` (a listing
        page); only for a static presigner (its keys are always there)."""
        keys = self.keys()
        assert keys is not None and self.static
        path = self.prefix.rstrip("/")
        return sigv4.presign_get(self.origin, self.host, path, keys, self.region, {}, 900, params=params)

    def put_url(self, key: str, headers: Mapping[str, str]) -> str | None:
        """A presigned PUT of ``key`` that must carry ``headers`` (lower-case
        names, values as sent), valid a short while: it is sent at once."""
        keys = self.keys()
        if keys is None:
            return None
        path = self.prefix + quote(key, safe="/~")
        return sigv4.presign_get(self.origin, self.host, path, keys, self.region, headers, PUT_EXPIRES, method="PUT")


def _made(
    origin: str, host: str, prefix: str, region: str, keys: Callable[[], Keys | None], static: bool
) -> _Presigner:
    """A bucket's presigner and its objects' GET signer."""
    gets = sigv4.GetSigner(origin, host, prefix, region, _SIGNED_HEADERS, PRESIGN_EXPIRES)
    return _Presigner(origin, host, prefix, region, keys, static, gets)


# a key that percent-encoding leaves as it is (``quote(key, safe="/~")``: ~2 us, this ~0.3)
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~/-]*").fullmatch


def _presigner(bucket: str, static_only: bool = False) -> _Presigner | None:
    """The bucket's presigner (cached per process and chain): a static one
    when ``awsenv`` reads the chain, else botocore's (None with
    ``static_only``: the caller then uses botocore itself)."""
    chain = _chain()
    made = _presigners.get((bucket, chain))  # (made once, then only read: no lock)
    if made is not None:
        return made
    with _lock:
        if (bucket, chain) not in _presigners:
            made = _static_presigner(bucket)
            if made is None and not static_only:
                made = _sdk_presigner(_client_locked(60.0, chain), bucket)
            if made is None:
                return None
            _presigners[(bucket, chain)] = made
        return _presigners[(bucket, chain)]


def _static_presigner(bucket: str) -> _Presigner | None:
    """Static keys and a custom endpoint (an S3-compatible store), read
    without botocore (``awsenv``): its URL is the endpoint's path plus the
    bucket (botocore's presigned URLs for a custom endpoint are path-style),
    signed for the bucket's region (a HEAD asks the store), else the
    configured one (us-east-1 when none). None for AWS itself (the bucket's region takes botocore and a
    HEAD) and anything ``awsenv`` leaves to botocore."""
    resolved = awsenv.resolve()
    if resolved is None or resolved.endpoint is None:
        return None
    endpoint = urlsplit(resolved.endpoint)
    if endpoint.scheme not in ("http", "https") or not endpoint.netloc or endpoint.query or endpoint.fragment:
        return None
    default = ":443" if endpoint.scheme == "https" else ":80"
    origin, host = f"{endpoint.scheme}://{endpoint.netloc}", endpoint.netloc.removesuffix(default)
    prefix = f"{endpoint.path.rstrip('/')}/{quote(bucket, safe='')}/"
    keys = resolved.credentials
    configured = resolved.region or "us-east-1"
    head = sigv4.presign_get(origin, host, prefix, keys, configured, {}, 60, method="HEAD")
    return _made(origin, host, prefix, _head_region(head) or configured, lambda: keys, static=True)


def _head_region(url: str) -> str | None:
    """The bucket's region as a store names it (``x-amz-bucket-region``,
    also on a refusal) to a HEAD of the bucket: one per bucket and
    process, what ``_bucket_region`` asks botocore; None when the store
    says nothing (or cannot be reached: the GETs then say why)."""
    try:
        return s3plain.get(url, "HEAD", timeout=10).headers.get("x-amz-bucket-region") or None
    except errors.DlengineError:
        return None


_PROBE = "dlengine-probe"


def _sdk_presigner(sdk: Any, bucket: str) -> _Presigner | None:
    """The SDK's own URL of a probe key tells where the bucket's keys are
    (no request is sent); None without credentials (the SDK path then says why)."""
    import boto3

    credentials = boto3.session.Session().get_credentials()
    if credentials is None:
        return None
    region = _bucket_region(sdk, bucket)
    if region != sdk.meta.region_name:  # the SDK follows the bucket's region: its endpoint, its signing region
        sdk = boto3.session.Session().client("s3", region_name=region, config=sdk.meta.config)
    probe = urlsplit(sdk.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": _PROBE}))
    if not probe.path.endswith("/" + _PROBE) or probe.scheme not in ("http", "https"):
        return None
    default = ":443" if probe.scheme == "https" else ":80"
    host = probe.netloc.removesuffix(default)
    origin = f"{probe.scheme}://{probe.netloc}"
    return _made(origin, host, probe.path[: -len(_PROBE)], region, functools.partial(_frozen, credentials), False)


def _frozen(credentials: Any) -> Keys | None:
    """The chain's current keys (a refreshing chain refreshes here)."""
    frozen = credentials.get_frozen_credentials()
    if not frozen.access_key or not frozen.secret_key:
        return None
    return (frozen.access_key, frozen.secret_key, frozen.token)


def _bucket_region(sdk: Any, bucket: str) -> str:
    """The bucket's region (one HEAD per bucket and process; S3 names it
    even when it refuses the HEAD), else the client's: a SigV4 URL signed
    for another region is refused, where the SDK would have followed."""
    from botocore.exceptions import BotoCoreError, ClientError

    region: str = sdk.meta.region_name or "us-east-1"
    try:
        metadata = sdk.head_bucket(Bucket=bucket).get("ResponseMetadata", {})
    except ClientError as exc:
        metadata = exc.response.get("ResponseMetadata", {})
    except BotoCoreError:
        return region
    return str((metadata.get("HTTPHeaders") or {}).get("x-amz-bucket-region") or region)


def _header_safe(text: str) -> bool:
    """Printable ASCII without spaces at its ends: what a header carries
    as it is and signs as sent (the SDK handles anything else)."""
    return text.isascii() and text.isprintable() and text == text.strip()


def _plain_key(key: str) -> bool:
    """A key a URL path carries as it is (libcurl would resolve ``.``/``..``
    segments: those keys stay on the SDK path)."""
    if "/." not in f"/{key}":
        return bool(key)  # (no segment starts with a dot: the split below was ~1 µs an object)
    return bool(key) and not any(part in (".", "..") for part in key.split("/"))


def refine_answer(info: ObjectInfo, headers: Mapping[str, str]) -> ObjectInfo:
    """An S3 GET answer read as ``_info`` reads the SDK's response: the
    version id, no MD5 from the ETag of an encrypted object, no composite
    (multipart) checksum as a whole-object one."""
    found = info.checksums
    if not found.keys() <= _ANSWER_CHECKSUMS:
        found = {k: v for k, v in found.items() if k in _ANSWER_CHECKSUMS}
    if headers.get("x-amz-checksum-type", "").upper() == "COMPOSITE":
        found = {k: v for k, v in found.items() if k == "md5"}
    encryption = headers.get("x-amz-server-side-encryption", "")
    if "md5" in found and (headers.get("x-amz-server-side-encryption-customer-algorithm") or encryption == "aws:kms"):
        found = {k: v for k, v in found.items() if k != "md5"}
    version = headers.get("x-amz-version-id")
    version = version if version and version != "null" else None
    if found is info.checksums and version == info.version:
        return info  # (the common answer: nothing to change, no copy; 7 -> 2 us)
    return dataclasses.replace(info, version=version, checksums=found)


_ANSWER_CHECKSUMS = frozenset({"md5", *_CHECKSUM_FIELDS.values()})


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
        with translated(f"{SCHEME}://{self.bucket}/{prefix}"):
            presigner = _presigner(self.bucket, static_only=True)
        if presigner is not None and presigner.static:
            yield from self._plain_list(presigner, prefix, suffix, start_after)
            return
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        args["PaginationConfig"] = {"PageSize": self.page_size}
        if start_after:
            args["StartAfter"] = start_after
        with translated(f"{SCHEME}://{self.bucket}/{prefix}"):
            for page in client().get_paginator("list_objects_v2").paginate(**args):
                yield from _listed(page.get("Contents", ()), suffix)

    def _plain_list(self, presigner: _Presigner, prefix: str, suffix: str, start_after: str) -> Iterator[ObjectInfo]:
        """The listing without botocore (``s3plain``): what ``_listed``
        makes of botocore's pages, from the same requests."""
        what = f"{SCHEME}://{self.bucket}/{prefix}"
        fail = functools.partial(_plain_error, what)
        for page in s3plain.list_pages(presigner.bucket_url, self.page_size, prefix, start_after, fail):
            for key, size, etag, modified in page.objects:
                if key.endswith(suffix):
                    yield ObjectInfo(key=key, size=size, etag=etag, last_modified=modified,
                                     checksums=_etag_md5(etag, None))  # fmt: skip

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

    def signed_get(self, key: str, listed: ObjectInfo | None = None) -> SignedGet | None:
        """The GET of ``key`` as a presigned URL (SigV4 in the query, valid
        ``PRESIGN_EXPIRES``), for the libcurl loop; None when the SDK must
        do it (no credentials, a key a URL cannot carry as it is)."""
        if not _plain_key(key):
            return None
        try:  # (``translated``, without its context manager's ~1.5 us an object)
            presigner = _presigner(self.bucket)
            url = presigner.url(key) if presigner is not None else None
        except errors.DlengineError:
            raise
        except Exception as exc:
            mapped = translate(exc, self.link(key))
            if mapped is None:
                raise
            raise mapped from exc
        return SignedGet(url, _SIGNED_HEADERS, refine_answer, ranged=True) if url else None

    def upload(
        self, key: str, data: Path | bytes, md5_hex: str | None = None, metadata: dict[str, str] | None = None
    ) -> None:
        """Store a verified local file (or its bytes, held in memory) as
        ``key``, with ``metadata`` (x-amz-meta-*) when given: one PUT
        carrying Content-MD5 (the store checks the bytes; for bytes in
        memory it is computed when the source gave none) up to
        ``SMALL_UPLOAD`` (presigned, through libcurl: ``s3_put``; through
        the SDK's PutObject when no presigner covers the bucket or the
        key), multipart through the process's one transfer manager above it."""
        extra: dict[str, Any] = {"Metadata": metadata} if metadata else {}
        size = len(data) if isinstance(data, bytes) else data.stat().st_size
        with translated(self.link(key)):
            if size <= SMALL_UPLOAD:
                if not md5_hex and isinstance(data, bytes):
                    md5_hex = hashlib.md5(data).hexdigest()  # ~15 µs for 10 KiB: the store checks what it got
                if md5_hex:
                    extra["ContentMD5"] = _b64encode(bytes.fromhex(md5_hex)).decode("ascii")
                if self._put_signed(key, data, size, extra.get("ContentMD5"), metadata):
                    return
                with nullcontext(data) if isinstance(data, bytes) else data.open("rb") as body:
                    client().put_object(Bucket=self.bucket, Key=key, Body=body, **extra)
            elif isinstance(data, bytes):
                manager = transfer_manager()
                manager.upload(io.BytesIO(data), self.bucket, key, extra_args=extra or None).result()
            else:
                transfer_manager().upload(str(data), self.bucket, key, extra_args=extra or None).result()

    def upload_soon(
        self,
        key: str,
        data: bytes,
        md5_hex: str | None,
        metadata: dict[str, str] | None,
        done: Callable[[errors.DlengineError | None], None],
    ) -> bool:
        """``upload`` of bytes in memory, sent by the process's PUT loop
        (``s3_put.loop``: many at once on one thread, no thread blocked per
        object); ``done(None)`` or ``done(error)`` from that loop's thread.
        False (nothing sent, ``done`` never called) when only ``upload``
        can: above ``SMALL_UPLOAD``, or when the PUT cannot be presigned."""
        if len(data) > SMALL_UPLOAD:
            return False
        with translated(self.link(key)):
            md5_b64 = _b64encode(bytes.fromhex(md5_hex) if md5_hex else hashlib.md5(data).digest()).decode()
            signed = self._signed_put(key, md5_b64, metadata)
        if signed is None:
            return False
        from dlengine.sources import s3_put  # pycurl: loaded in workers anyway

        s3_put.loop().submit(signed[0], signed[1], data, UPLOAD_TIMEOUT, self.link(key), _classify, done)
        return True

    def _put_signed(
        self, key: str, data: Path | bytes, size: int, md5_b64: str | None, metadata: dict[str, str] | None
    ) -> bool:
        """The small upload as a presigned PUT through libcurl; False when
        the SDK must do it (no presigner, a key a URL cannot carry as it is,
        metadata a header cannot carry)."""
        signed = self._signed_put(key, md5_b64, metadata)
        if signed is None:
            return False
        from dlengine.sources import s3_put  # pycurl: loaded in workers anyway

        s3_put.put(signed[0], signed[1], data, size, UPLOAD_TIMEOUT, self.link(key), _classify)
        return True

    def _signed_put(
        self, key: str, md5_b64: str | None, metadata: dict[str, str] | None
    ) -> tuple[str, dict[str, str]] | None:
        """The presigned URL of a PUT of ``key`` and the headers it must
        carry; None when the SDK must do it (no presigner, a key a URL
        cannot carry as it is, metadata a header cannot carry)."""
        if not _plain_key(key) or not all(_header_safe(k) and _header_safe(v) for k, v in (metadata or {}).items()):
            return None
        presigner = _presigner(self.bucket)
        if presigner is None:
            return None
        headers = {f"x-amz-meta-{k.lower()}": " ".join(v.split()) for k, v in (metadata or {}).items()}
        if md5_b64:
            headers["content-md5"] = md5_b64
        url = presigner.put_url(key, headers)
        return None if url is None else (url, headers)

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


def _b64encode(data: bytes) -> bytes:
    """``base64.b64encode`` (imported here: ~3 ms, and a worker that only
    downloads never needs it)."""
    import base64

    return base64.b64encode(data)


def _get_args(bucket: str, request: Request) -> dict[str, Any]:
    args: dict[str, Any] = {"Bucket": bucket, "Key": request.key}
    if request.offset > 0:
        args["Range"] = f"bytes={request.offset}-"
        if request.if_range:
            args["IfMatch"] = request.if_range
        return args
    args["ChecksumMode"] = "ENABLED"  # whole-object checksums come with whole bodies only
    from email.utils import parsedate_to_datetime  # here: a worker that only signs GETs never needs it

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
    from email.utils import format_datetime

    return format_datetime(value.astimezone(timezone.utc), usegmt=True)

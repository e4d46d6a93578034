"""Azure Blob Storage through azure-storage-blob.

Credentials follow the SDK's conventions: ``AZURE_STORAGE_CONNECTION_STRING``,
else an account URL (``AZURE_STORAGE_ACCOUNT_URL``, or
``https://$AZURE_STORAGE_ACCOUNT.blob.core.windows.net``) with
``DefaultAzureCredential`` when azure-identity is installed (anonymous
otherwise). They are read here, when a client is made, and never written
to the ledger. ``az://container/key`` names a blob of that account.

The SDK is imported lazily: without it ``az://`` links and listings raise
``MissingExtraError`` (a blob URL needs the account, so there is no public
HTTPS fallback). Signed GETs and listings do without it where they can: an
account key or a given SAS (``azsas``), a token credential's user
delegation key asked for over REST (``azdeleg``).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from dlengine import errors
from dlengine.sources import azdeleg, azsas, checksums, s3plain
from dlengine.sources.base import ObjectInfo, Request, SignedGet, installed, translating

EXTRA = "pip install 'dlengine[azure]'"
SCHEME = "az"
ENV_CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING"
ENV_ACCOUNT_URL = "AZURE_STORAGE_ACCOUNT_URL"
ENV_ACCOUNT = "AZURE_STORAGE_ACCOUNT"
SAS_HOURS = 1  # a signed GET's life; a transfer starts at once (retries sign again)

_lock = threading.Lock()
_client: list[Any] = []


def available() -> bool:
    """azure-storage-blob is installed (found, not imported: a worker
    signing with a connection string's key never imports it)."""
    if not _available:
        _available.append(installed("azure.storage.blob"))
    return _available[0]


_available: list[bool] = []
_accounts: dict[tuple[str, str], azsas.Account | None] = {}  # (connection string, account URL) -> what signs


def _keyed_account() -> azsas.Account | None:
    """The connection string's account key and endpoint, or a SAS given
    in it or in the account URL, read without the SDK."""
    text = os.environ.get(ENV_CONNECTION_STRING) or ""
    url = "" if text else os.environ.get(ENV_ACCOUNT_URL) or ""
    if not (text or url):
        return None
    with _lock:
        if (text, url) not in _accounts:
            _accounts.clear()
            _accounts[(text, url)] = azsas.parse(text) if text else azsas.from_url(url)
        return _accounts[(text, url)]


def client() -> Any:
    """One BlobServiceClient per process (thread-safe)."""
    with _lock:
        if not _client:
            _client.append(_new_client())
        return _client[0]


def _new_client() -> Any:
    try:
        from azure.storage.blob import BlobServiceClient
    except ImportError:
        raise errors.MissingExtraError(f"Azure Blob Storage needs azure-storage-blob: {EXTRA}") from None
    options: dict[str, Any] = {"retry_total": 2}
    connection_string = os.environ.get(ENV_CONNECTION_STRING)
    if connection_string:
        with translated("az://"):
            return BlobServiceClient.from_connection_string(connection_string, **options)
    return BlobServiceClient(_account_url(), credential=_credential(), **options)


def _account_url() -> str:
    url = os.environ.get(ENV_ACCOUNT_URL)
    account = os.environ.get(ENV_ACCOUNT)
    if url:
        return url
    if account:
        return f"https://{account}.blob.core.windows.net"
    raise errors.SourceDeniedError(
        f"az:// needs an account: set {ENV_CONNECTION_STRING}, {ENV_ACCOUNT_URL} or {ENV_ACCOUNT}"
    )


_credentials: list[Any] = []  # the process's credential (one, as there is one client)
_credential_lock = threading.Lock()  # (``client`` holds ``_lock`` while it makes the client)
_signers: dict[str, tuple[azdeleg.Endpoint, Any] | None] = {}  # account URL -> (endpoint, token credential)


def _credential() -> Any:
    """The process's credential for a bare account URL (made once)."""
    with _credential_lock:
        if not _credentials:
            _credentials.append(_default_credential())
        return _credentials[0]


def _token_signer() -> tuple[azdeleg.Endpoint, Any] | None:
    """With a bare account URL and a token credential: the account's
    endpoint and the credential, to sign without the SDK (``azdeleg``);
    None otherwise (a connection string, anonymous, an account the SDK
    alone can name: the SDK's path)."""
    if os.environ.get(ENV_CONNECTION_STRING):
        return None
    url = os.environ.get(ENV_ACCOUNT_URL) or ""
    if not url and os.environ.get(ENV_ACCOUNT):
        url = _account_url()
    if not url:
        return None
    with _lock:
        if url in _signers:
            return _signers[url]
    credential = _credential()
    account = azdeleg.endpoint(url) if hasattr(credential, "get_token") else None
    with _lock:
        _signers.clear()
        _signers[url] = (account, credential) if account is not None else None
        return _signers[url]


def _plain_key(signer: tuple[azdeleg.Endpoint, Any]) -> Any:
    """The process's user delegation key, asked for over REST."""
    account, credential = signer

    def fetch(start: datetime, until: datetime) -> azdeleg.DelegationKey:
        return azdeleg.request_key(account, credential, start.timestamp(), until.timestamp())

    return _delegation_key(fetch)


def _default_credential() -> Any:
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        return None  # anonymous: public containers only
    return DefaultAzureCredential()


def translated(what: str) -> AbstractContextManager[None]:
    """Run SDK calls; their exceptions leave as dlengine errors."""
    return translating(translate, what)


def translate(exc: BaseException, what: str) -> errors.DlengineError | None:
    """azure-core's exceptions -> dlengine's error classes (the one place);
    None for exceptions that are not the SDK's or the network's."""
    from azure.core import exceptions as ax

    if isinstance(exc, ax.ResourceNotFoundError):
        return errors.SourceNotFoundError(f"{what}: not found ({_code(exc)})")
    if isinstance(exc, ax.ClientAuthenticationError):
        return errors.SourceDeniedError(f"{what}: access denied ({_code(exc)})")
    if isinstance(exc, ax.ResourceModifiedError):
        return errors.SourceChangedError(f"{what}: changed ({_code(exc)})")
    if isinstance(exc, ax.ServiceRequestTimeoutError | ax.ServiceResponseTimeoutError | TimeoutError):
        return errors.SourceTimeoutError(f"{what}: timed out ({exc})")
    if isinstance(exc, ax.ServiceRequestError | ax.ServiceResponseError | ConnectionError | OSError):
        return errors.SourceConnectionError(f"{what}: {exc}")
    if isinstance(exc, ax.HttpResponseError):
        return _status_error(int(exc.status_code or 0), f"{what}: HTTP {exc.status_code} ({_code(exc)})")
    if isinstance(exc, ax.AzureError | ValueError):  # ValueError: a malformed connection string
        return errors.SourceDeniedError(f"{what}: {exc}")
    return None


def _status_error(status: int, reason: str) -> errors.DlengineError:
    if status in (401, 403):
        return errors.SourceDeniedError(reason)
    if status in (412, 416):
        return errors.SourceChangedError(reason)
    if status in (408, 429) or status >= 500:
        return errors.ServerBusyError(reason)
    return errors.SourceHTTPError(reason)


def _code(exc: Any) -> str:
    code = getattr(exc, "error_code", None) or getattr(exc, "reason", None) or type(exc).__name__
    return str(getattr(code, "value", code))


class AzureStream:
    """A StorageStreamDownloader."""

    def __init__(self, downloader: Any, info: ObjectInfo, offset: int, not_modified: bool = False) -> None:
        self._downloader = downloader
        self.info = info
        self.offset = offset
        self.not_modified = not_modified

    def chunks(self, size: int) -> Iterator[bytes]:
        if self._downloader is None:
            return
        with translated(self.info.key):
            yield from self._downloader.chunks()

    def close(self) -> None:
        self._downloader = None


class AzureSource:
    """One container. Keys are blob names inside it."""

    def __init__(self, container: str, page_size: int = 1000) -> None:
        self.container = container
        self.page_size = page_size

    def link(self, key: str) -> str:
        return f"{SCHEME}://{self.container}/{key}"

    def stat(self, key: str, headers: object = None, timeout: float = 60.0) -> ObjectInfo:
        with translated(self.link(key)):
            props = self._blob(key).get_blob_properties(timeout=int(timeout))
        return _info(key, props)

    def list(self, prefix: str = "", suffix: str = "", start_after: str = "") -> Iterator[ObjectInfo]:
        """Paged List Blobs: the prefix goes to the server; the suffix and
        keys up to ``start_after`` (no server-side equivalent) are filtered here."""
        account = _keyed_account()
        if account is not None:  # List Blobs through pycurl: no SDK in the supervisor
            keyed = account
            yield from self._plain_list(lambda p: azsas.list_url(keyed, self.container, p), prefix, suffix, start_after)
            return
        signer = _token_signer()
        key = None
        if signer is not None:
            try:
                key = _plain_key(signer)
            except errors.DlengineError:
                key = None  # refused: the SDK lists with the token (and says why if it fails too)
        if signer is not None and key is not None:
            endpoint = signer[0]
            yield from self._plain_list(
                lambda p: azdeleg.list_url(endpoint, key, self.container, p), prefix, suffix, start_after
            )
            return
        container = client().get_container_client(self.container)
        with translated(f"{SCHEME}://{self.container}/{prefix}"):
            pages = container.list_blobs(name_starts_with=prefix or None, results_per_page=self.page_size)
            for blob in pages:
                if blob.name > start_after and blob.name.endswith(suffix):
                    yield _info(blob.name, blob)

    def _plain_list(
        self, page_url: Callable[[dict[str, str]], str], prefix: str, suffix: str, start_after: str
    ) -> Iterator[ObjectInfo]:
        """The listing as ``list`` reads the SDK's, page after page (``page_url``:
        a page's URL with its SAS, from ``azsas`` or ``azdeleg``)."""
        import xml.etree.ElementTree as ET

        params = {"maxresults": str(self.page_size)}
        if prefix:
            params["prefix"] = prefix
        what = f"{SCHEME}://{self.container}/{prefix}"
        while True:
            reply = s3plain.get(page_url(params))
            if reply.status != 200:
                code = reply.headers.get("x-ms-error-code", "")
                if reply.status == 404:
                    raise errors.SourceNotFoundError(f"{what}: not found ({code})")
                raise _status_error(reply.status, f"{what}: HTTP {reply.status} ({code})")
            try:
                blobs, marker = azsas.parse_list(reply.body)
            except ET.ParseError:
                raise errors.ServerBusyError(f"{what}: a listing page that is not XML") from None
            for blob in blobs:
                if blob.name > start_after and blob.name.endswith(suffix):
                    yield _listed_info(blob)
            if not marker:
                return
            params["marker"] = marker

    def open(self, request: Request) -> AzureStream:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotModifiedError

        args = _download_args(request, MatchConditions)
        with translated(self.link(request.key)):
            try:
                downloader = self._blob(request.key).download_blob(**args)
            except (ResourceNotModifiedError, ResourceModifiedError) as exc:
                if request.offset > 0 and isinstance(exc, ResourceModifiedError):
                    return self.open(Request(request.key, timeout=request.timeout))  # If-Range: send it whole
                if not request.if_none_match:
                    raise
                # If-None-Match held (Azurite answers 412 where Azure answers 304)
                return AzureStream(None, ObjectInfo(key=request.key, etag=request.if_none_match), 0, True)
        return AzureStream(downloader, _info(request.key, downloader.properties), request.offset)

    def signed_get(self, key: str, listed: ObjectInfo | None = None) -> SignedGet | None:
        """The blob's GET for the libcurl loop: its URL with a read-only
        SAS for this one blob, signed with the account key of the
        connection string or a user delegation key (token credentials);
        with the SAS the connection string or the account URL gives; the
        bare URL for an anonymous client (public containers). A ranged GET
        is answered with the blob's own ETag and stored MD5 (``ranged``: a
        large blob's first request asks for its first segment only). The key and
        given-SAS cases import nothing of azure.*, a token credential
        nothing of azure.storage (``azdeleg``: the key over REST, the SAS
        signed here); the SDK signs what they cannot (an account URL it
        alone can name)."""
        account = _keyed_account()
        if account is not None:  # the SDK's SAS (or the one given) without the SDK (``azsas``)
            return SignedGet(azsas.blob_url(account, self.container, key, SAS_HOURS), {}, refine_answer, ranged=True)
        signer = _token_signer()
        if signer is not None:  # a user delegation SAS without the SDK
            delegation = _plain_key(signer)
            if delegation is None:
                return None  # refused a while ago: the SDK path, with the token
            url = azdeleg.blob_url(signer[0], delegation, self.container, key, SAS_HOURS)
            return SignedGet(url, {}, refine_answer, ranged=True)
        with translated(self.link(key)):
            sdk = client()
            url = str(sdk.get_blob_client(self.container, key).url)
            sas = _blob_sas(sdk, self.container, key)
        if sas is None:
            return None
        joined = f"{url}{'&' if '?' in url else '?'}{sas}" if sas else url
        return SignedGet(joined, {}, refine_answer, ranged=True)

    def upload(
        self, key: str, data: Path | bytes, md5_hex: str | None = None, metadata: dict[str, str] | None = None
    ) -> None:
        """Store a verified local file (or its bytes, held in memory) as ``key``, with its Content-MD5 and
        ``metadata`` when given (Azure's names are C# identifiers: ``-`` is
        stored as ``_``, and ``metadata()`` turns it back)."""
        from azure.storage.blob import ContentSettings

        settings = ContentSettings(content_md5=bytearray.fromhex(md5_hex)) if md5_hex else None
        stored = {k.replace("-", "_"): v for k, v in metadata.items()} if metadata else None
        with translated(self.link(key)), nullcontext(data) if isinstance(data, bytes) else open(data, "rb") as body:
            blob = self._blob(key)
            blob.upload_blob(body, overwrite=True, content_settings=settings, metadata=stored, max_concurrency=4)

    def metadata(self, key: str) -> dict[str, str] | None:
        """The metadata of a stored blob (``_`` read as ``-``); None if there is no such blob."""
        try:
            with translated(self.link(key)):
                props = self._blob(key).get_blob_properties()
        except errors.SourceNotFoundError:
            return None
        return {str(k).lower().replace("_", "-"): str(v) for k, v in (props.metadata or {}).items()}

    def delete(self, key: str) -> None:
        with translated(self.link(key)):
            self._blob(key).delete_blob()

    def _blob(self, key: str) -> Any:
        return client().get_blob_client(self.container, key)


def _blob_sas(sdk: Any, container: str, key: str) -> str | None:
    """A read SAS of one blob ("" without credentials): signed with the
    account key of a shared-key credential, or with a user delegation key
    the SDK obtains with a token credential (``DefaultAzureCredential``
    and the like); None when neither is to be had (the SDK path stays)."""
    credential = sdk.credential
    if credential is None:
        return ""
    from azure.storage.blob import BlobSasPermissions, generate_blob_sas

    expiry = datetime.now(timezone.utc) + timedelta(hours=SAS_HOURS)
    signer: dict[str, Any]
    account_key = getattr(credential, "account_key", None)
    if account_key:
        signer = {"account_key": account_key}
    elif hasattr(credential, "get_token"):
        delegation = _delegation_key(sdk.get_user_delegation_key)
        if delegation is None:
            return None
        signer = {"user_delegation_key": delegation}
    else:
        return None
    sas: str = generate_blob_sas(
        sdk.account_name, container, key, permission=BlobSasPermissions(read=True), expiry=expiry, **signer
    )
    return sas


DELEGATION_HOURS = 6  # a user delegation key's life (Azure allows 7 days); renewed with SAS_HOURS + 5 min left
_delegation: list[tuple[datetime, Any]] = []  # (valid until, key), or (retry after, None) after a refusal
_delegation_lock = threading.Lock()
DELEGATION_RETRY = timedelta(minutes=5)


def _delegation_key(fetch: Callable[[datetime, datetime], Any]) -> Any:
    """The process's user delegation key (one request per DELEGATION_HOURS,
    under the token credential's own caching), got by ``fetch(start,
    expiry)`` (over REST, or the SDK's ``get_user_delegation_key``); None
    for a while after the service refused one (no permission to ask: the
    SDK path with the token then serves each blob, and says why if that
    fails too)."""
    now = datetime.now(timezone.utc)
    with _delegation_lock:
        if _delegation and now < _delegation[0][0]:
            return _delegation[0][1]
        start, until = now - timedelta(minutes=5), now + timedelta(hours=DELEGATION_HOURS)
        try:
            with translated("az:// user delegation key"):
                key = fetch(start, until)
        except errors.DlengineError:
            _delegation[:] = [(now + DELEGATION_RETRY, None)]
            raise
        _delegation[:] = [(until - timedelta(hours=SAS_HOURS, minutes=5), key)]
        return key


def refine_answer(info: ObjectInfo, headers: Mapping[str, str]) -> ObjectInfo:
    """A blob GET's answer read as ``_info`` reads the SDK's properties:
    the version id, and the blob's stored MD5 (also on a ranged answer)."""
    found = {k: v for k, v in info.checksums.items() if k == "md5"}
    stored = checksums.b64_to_hex(headers.get("x-ms-blob-content-md5", ""))
    if stored:
        found["md5"] = stored
    version = headers.get("x-ms-version-id") or None
    return dataclasses.replace(info, version=version, checksums=found)


def _download_args(request: Request, conditions: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"max_concurrency": 1, "timeout": int(request.timeout)}
    if request.offset > 0:
        args["offset"] = request.offset
        if request.if_range:
            args.update(etag=request.if_range, match_condition=conditions.IfNotModified)
    elif request.if_none_match:
        args.update(etag=request.if_none_match, match_condition=conditions.IfModified)
    return args


def _info(key: str, props: Any) -> ObjectInfo:
    md5 = props.content_settings.content_md5 if props.content_settings else None
    return ObjectInfo(
        key=key,
        size=_size(props),
        etag=_quoted(props.etag),
        version=getattr(props, "version_id", None),
        last_modified=_http_date(props.last_modified),
        checksums={"md5": bytes(md5).hex()} if md5 else {},
    )


def _listed_info(blob: azsas.ListedBlob) -> ObjectInfo:
    """A blob of a plain listing as ``_info`` reads the SDK's ``BlobProperties``."""
    md5 = checksums.b64_to_hex(blob.content_md5) if blob.content_md5 else None
    return ObjectInfo(
        key=blob.name,
        size=blob.size,
        etag=_quoted(blob.etag),
        version=blob.version_id,
        last_modified=blob.last_modified,
        checksums={"md5": md5} if md5 else {},
    )


def _size(props: Any) -> int | None:
    """The whole blob's size, also when ``props`` describe a range."""
    total = str(getattr(props, "content_range", None) or "").rpartition("/")[2]
    if total.isdigit():
        return int(total)
    return int(props.size) if props.size is not None else None


def _quoted(etag: str | None) -> str | None:
    """Listings give ETags bare, downloads quoted: keep one form."""
    if not etag or etag.startswith(('"', "W/")):
        return etag
    return f'"{etag}"'


def _http_date(value: datetime | None) -> str | None:
    if not isinstance(value, datetime):
        return None
    from email.utils import format_datetime  # (the SDK's path only: ~3 ms of a worker's import)

    return format_datetime(value.astimezone(timezone.utc), usegmt=True)

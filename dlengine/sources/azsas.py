"""A blob's read SAS from a connection string's account key, without the
Azure SDK: what ``azure.generate_blob_sas`` makes, for the one case a
worker needs most (``AZURE_STORAGE_CONNECTION_STRING`` with an
``AccountKey``), and a SAS the user gave (a connection string's
``SharedAccessSignature``, an ``AZURE_STORAGE_ACCOUNT_URL`` with one in its
query), which the blob's URL carries as it is; and a backend job's
listing (List Blobs pages with a list-only container SAS, or the given
one), read as the SDK reads them.

azure-storage-blob costs a fresh worker ~0.4 s to import before its first
signed GET; a service SAS is one HMAC-SHA256 over a few lines. The URL is
the SDK's blob URL (the blob endpoint, the container, the name quoted with
``/`` and ``~`` kept), the SAS the SDK's fields in its order; both are
checked against the SDK in ``tests/integration/test_azure_sas.py``, and
Azurite verifies the signature. Anything else in the connection string
(development storage shorthand, no key and no SAS) is the SDK's: ``parse``
answers None. The key and the SAS never leave this process's memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping
from urllib.parse import quote, unquote, urlencode, urlsplit

from dlengine.records import frozen

__all__ = ["Account", "ListedBlob", "blob_url", "from_url", "list_url", "parse", "parse_list"]

SAS_VERSION = "2025-05-05"  # a fixed version: its string-to-sign is the one below


@frozen(repr=False)
class Account:
    """The account of a connection string: its name, decoded key and blob
    endpoint (no trailing slash); or, with ``sas``, a SAS to append as it
    is (no key). The repr names neither."""

    name: str
    key: bytes
    endpoint: str
    sas: str = ""

    def __repr__(self) -> str:
        return f"Account(name={self.name!r}, endpoint={self.endpoint!r})"


def parse(connection_string: str) -> Account | None:
    """The account key and blob endpoint of a connection string, or None
    when the SDK must read it."""
    fields: dict[str, str] = {}
    for part in connection_string.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            fields[name.strip().lower()] = value.strip()
    if "usedevelopmentstorage" in fields:
        return None
    if "sharedaccesssignature" in fields:
        return _with_sas(fields, fields["sharedaccesssignature"].lstrip("?"))
    account, encoded = fields.get("accountname"), fields.get("accountkey")
    if not account or not encoded:
        return None
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None  # the SDK says what is wrong with it
    endpoint = _endpoint(fields, account)
    return Account(account, key, endpoint) if endpoint else None


def _endpoint(fields: dict[str, str], account: str | None) -> str | None:
    """The blob endpoint a connection string names, or derives from the account."""
    endpoint = fields.get("blobendpoint")
    if not endpoint and account:
        scheme = fields.get("defaultendpointsprotocol", "https")
        endpoint = f"{scheme}://{account}.blob.{fields.get('endpointsuffix', 'core.windows.net')}"
    if not endpoint or not endpoint.startswith(("http://", "https://")):
        return None
    return endpoint.rstrip("/")


def _with_sas(fields: dict[str, str], sas: str) -> Account | None:
    endpoint = _endpoint(fields, fields.get("accountname"))
    if endpoint is None or "sig=" not in sas:
        return None
    return Account(fields.get("accountname") or urlsplit(endpoint).hostname or "", b"", endpoint, sas)


def from_url(account_url: str) -> Account | None:
    """An account URL that carries a SAS in its query (the SDK's
    ``BlobServiceClient(url)`` with no credential uses it for every
    request); None for a bare URL (a token credential, or anonymous: the
    SDK's)."""
    parts = urlsplit(account_url)
    if parts.scheme not in ("http", "https") or "sig=" not in parts.query:
        return None
    endpoint = f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")
    return Account((parts.hostname or "").split(".")[0], b"", endpoint, parts.query)


def blob_url(account: Account, container: str, blob: str, hours: float, now: float | None = None) -> str:
    """The blob's URL with a read-only SAS valid ``hours`` from ``now``
    (the account's own SAS, when it has one)."""
    path = f"{account.endpoint}/{quote(container, safe='')}/{quote(blob, safe='/~')}"
    sas = account.sas or _service_sas(account, f"/blob/{account.name}/{container}/{blob}", "r", "b", hours, now)
    return f"{path}?{sas}"


def list_url(account: Account, container: str, params: Mapping[str, str], hours: float = 1.0) -> str:
    """A List Blobs page of the container (``params``: prefix, marker,
    maxresults) with a list-only container SAS (or the account's own)."""
    query = urlencode({"restype": "container", "comp": "list", **params}, quote_via=quote)
    sas = account.sas or _service_sas(account, f"/blob/{account.name}/{container}", "l", "c", hours, None)
    return f"{account.endpoint}/{quote(container, safe='')}?{query}&{sas}"


def _service_sas(account: Account, resource: str, permission: str, kind: str, hours: float, now: float | None) -> str:
    """A service SAS of ``resource`` (the SDK's fields, in its order)."""
    expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((time.time() if now is None else now) + hours * 3600))
    # sp, st, se, resource, si, sip, spr, sv, sr, snapshot time, ses, rscc, rscd, rsce, rscl, rsct
    to_sign = "\n".join([permission, "", expiry, resource, "", "", "", SAS_VERSION, kind, "", "", "", "", "", "", ""])
    signature = base64.b64encode(hmac.new(account.key, to_sign.encode(), hashlib.sha256).digest()).decode()
    # as the SDK quotes
    return f"se={quote(expiry, safe='/')}&sp={permission}&sv={SAS_VERSION}&sr={kind}&sig={quote(signature, safe='/')}"


@frozen
class ListedBlob:
    """One blob of a List Blobs answer, as the SDK's ``BlobProperties``
    carry it: the ETag bare, the MD5 in base64."""

    name: str
    size: int | None
    etag: str | None
    last_modified: str | None
    content_md5: str | None
    version_id: str | None


def parse_list(body: bytes) -> tuple[list[ListedBlob], str]:
    """The blobs of a List Blobs answer and its next marker ('' at the end);
    names the service had to encode (``Encoded="true"``) decoded."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(body)
    blobs = []
    for item in root.iter("Blob"):
        name_el = item.find("Name")
        name = (name_el.text or "") if name_el is not None else ""
        if name_el is not None and name_el.get("Encoded", "").lower() == "true":
            name = unquote(name)
        props = item.find("Properties")

        def prop(field: str, props: ET.Element | None = props) -> str | None:
            return props.findtext(field) if props is not None else None

        size = prop("Content-Length")
        blobs.append(ListedBlob(name, int(size) if size else None, prop("Etag"), prop("Last-Modified"),
                                prop("Content-MD5") or None, item.findtext("VersionId")))  # fmt: skip
    return blobs, root.findtext("NextMarker") or ""

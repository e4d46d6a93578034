"""A blob's read SAS from a connection string's account key, without the
Azure SDK: what ``azure.generate_blob_sas`` makes, for the one case a
worker needs most (``AZURE_STORAGE_CONNECTION_STRING`` with an
``AccountKey``).

azure-storage-blob costs a fresh worker ~0.4 s to import before its first
signed GET; a service SAS is one HMAC-SHA256 over a few lines. The URL is
the SDK's blob URL (the blob endpoint, the container, the name quoted with
``/`` and ``~`` kept), the SAS the SDK's fields in its order; both are
checked against the SDK in ``tests/integration/test_azure_sas.py``, and
Azurite verifies the signature. Anything else in the connection string
(a SAS of its own, development storage shorthand, no key) is the SDK's:
``parse`` answers None. The key never leaves this process's memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import quote

__all__ = ["Account", "blob_url", "parse"]

SAS_VERSION = "2025-05-05"  # a fixed version: its string-to-sign is the one below


@dataclass(frozen=True, repr=False)
class Account:
    """The account of a connection string: its name, decoded key and blob
    endpoint (no trailing slash). The repr names no key."""

    name: str
    key: bytes
    endpoint: str

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
    if "sharedaccesssignature" in fields or "usedevelopmentstorage" in fields:
        return None
    account, encoded = fields.get("accountname"), fields.get("accountkey")
    if not account or not encoded:
        return None
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None  # the SDK says what is wrong with it
    endpoint = fields.get("blobendpoint")
    if not endpoint:
        scheme = fields.get("defaultendpointsprotocol", "https")
        endpoint = f"{scheme}://{account}.blob.{fields.get('endpointsuffix', 'core.windows.net')}"
    if not endpoint.startswith(("http://", "https://")):
        return None
    return Account(account, key, endpoint.rstrip("/"))


def blob_url(account: Account, container: str, blob: str, hours: float, now: float | None = None) -> str:
    """The blob's URL with a read-only SAS valid ``hours`` from ``now``."""
    expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((time.time() if now is None else now) + hours * 3600))
    resource = f"/blob/{account.name}/{container}/{blob}"
    # sp, st, se, resource, si, sip, spr, sv, sr, snapshot time, ses, rscc, rscd, rsce, rscl, rsct
    to_sign = "\n".join(["r", "", expiry, resource, "", "", "", SAS_VERSION, "b", "", "", "", "", "", "", ""])
    signature = base64.b64encode(hmac.new(account.key, to_sign.encode(), hashlib.sha256).digest()).decode()
    sas = (
        f"se={quote(expiry, safe='/')}&sp=r&sv={SAS_VERSION}&sr=b&sig={quote(signature, safe='/')}"  # as the SDK quotes
    )
    return f"{account.endpoint}/{quote(container, safe='')}/{quote(blob, safe='/~')}?{sas}"

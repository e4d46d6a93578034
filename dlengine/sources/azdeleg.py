"""Azure Blob with a token credential, without the Azure SDK: the user
delegation key asked for over REST, and a blob's read SAS (a container's
list SAS) signed with it, as ``azure.storage.blob.generate_blob_sas(...,
user_delegation_key=...)`` signs them.

A worker that signs with a token credential (``DefaultAzureCredential``
and the like: anything with ``get_token``) used to import
azure-storage-blob (0.2-0.3 s of CPU) to ask for the key and to sign each
blob (~1 ms). Here the key is one POST (``Get User Delegation Key``, a
bearer token from the credential) through a plain pycurl handle, and a
SAS is one HMAC-SHA256 over the fields of the SAS version, in the SDK's
order. Only the credential's own package is imported (azure-identity, or
whatever the user configured).

The string-to-sign depends on the SAS version (``sv``): 2020-12-06 added
the authorized/unauthorized object ids and the correlation id, 2025-07-05
the delegated user's tenant and object ids, 2026-04-06 the signed request
headers and query parameters. dlengine signs ``SAS_VERSION`` (the one
``azsas`` signs service SAS with, which Azurite 3.35 verifies); the
layouts of the later versions are here so that the URLs can be compared
with the SDK's, which signs only its newest version
(``tests/integration/test_azure_delegation.py``).

The token goes only to the account's blob endpoint, over HTTPS, or over
HTTP to a loopback address (an emulator or a local TLS front; the SDK
refuses a token credential over HTTP altogether). The token and the key
never leave this process's memory: no repr shows them, no message names
them (a SAS in a URL is hidden by ``redact``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from dlengine import errors
from dlengine.sources import azsas, s3plain

__all__ = ["DelegationKey", "Endpoint", "blob_url", "endpoint", "list_url", "request_key", "sas"]

SAS_VERSION = azsas.SAS_VERSION  # the SAS dlengine signs (and the key request's x-ms-version)
SCOPE = "https://storage.azure.com/.default"
_DELEGATED_USER = "2025-07-05"  # skdutid, sduoid in the string-to-sign from this version on
_REQUEST_BINDINGS = "2026-04-06"  # srh, srq from this version on
_OBJECT_IDS = "2020-12-06"  # saoid, suoid, scid (the oldest layout kept here)
_LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class Endpoint:
    """An account's blob endpoint (no trailing slash) and name, read from
    the account URL as the SDK reads it."""

    name: str
    url: str


def endpoint(account_url: str) -> Endpoint | None:
    """The account of a bare account URL (``https://acc.blob.core.windows.net``,
    an emulator's ``http://127.0.0.1:P/acc``); None when the SDK could not
    name the account (a custom domain), or the token would cross the
    network unencrypted (HTTP to a host that is not a loopback one)."""
    parts = urlsplit(account_url)
    netloc = parts.netloc
    if parts.scheme not in ("http", "https") or parts.query or not netloc:
        return None
    if parts.scheme == "http" and not _loopback(parts.hostname or ""):
        return None
    head, sep, _ = netloc.partition(".blob.core.")
    if sep:  # the SDK's _construct_endpoints: the path is not part of the endpoint
        name = head.split("-secondary")[0]
        for suffix in ("-ipv6", "-dualstack"):
            name = name.removesuffix(suffix)
        return Endpoint(name, f"{parts.scheme}://{netloc}") if name else None
    if netloc.startswith(("localhost", "127.0.0.1")):  # the SDK's test for an emulator
        name = parts.path.strip("/")
        return Endpoint(name, f"{parts.scheme}://{netloc}/{name}") if name and "/" not in name else None
    return None


def _loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, repr=False)
class DelegationKey:
    """A user delegation key as the service issued it (times as it wrote
    them); ``value`` is the base64 signing key. The repr shows its times only."""

    oid: str
    tid: str
    start: str
    expiry: str
    service: str
    version: str
    value: str
    delegated_user_tid: str | None = None

    def __repr__(self) -> str:
        return f"DelegationKey(start={self.start!r}, expiry={self.expiry!r})"


def _xml_time(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def request_key(
    account: Endpoint, credential: Any, start: float, expiry: float, timeout: float = 30.0
) -> DelegationKey:
    """Get User Delegation Key, valid from ``start`` to ``expiry`` (epoch
    seconds), with a bearer token of ``credential``. A refusal raises the
    error its status means (``SourceDeniedError`` for 401/403), naming the
    service's error code, never the token."""
    import xml.etree.ElementTree as ET

    token = str(credential.get_token(SCOPE).token)
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<KeyInfo><Start>{_xml_time(start)}</Start><Expiry>{_xml_time(expiry)}</Expiry></KeyInfo>"
    ).encode()
    headers = {"Authorization": f"Bearer {token}", "x-ms-version": SAS_VERSION,
               "Content-Type": "application/xml", "Accept": "application/xml"}  # fmt: skip
    url = f"{account.url}/?restype=service&comp=userdelegationkey"
    reply = s3plain.get(url, "POST", timeout, headers, body)
    what = "az:// user delegation key"
    if reply.status != 200:
        code = reply.headers.get("x-ms-error-code", "")
        raise _status_error(reply.status, f"{what}: HTTP {reply.status} ({code})")
    try:
        root = ET.fromstring(reply.body)
    except ET.ParseError:
        raise errors.ServerBusyError(f"{what}: an answer that is not XML") from None
    fields = {child.tag: (child.text or "") for child in root}
    try:
        return DelegationKey(fields["SignedOid"], fields["SignedTid"], fields["SignedStart"], fields["SignedExpiry"],
                             fields["SignedService"], fields["SignedVersion"], fields["Value"],
                             fields.get("SignedDelegatedUserTid") or None)  # fmt: skip
    except KeyError as exc:
        raise errors.ServerBusyError(f"{what}: the answer lacks {exc.args[0]}") from None


def _status_error(status: int, reason: str) -> errors.DlengineError:
    if status in (401, 403):
        return errors.SourceDeniedError(reason)
    if status in (408, 429) or status >= 500:
        return errors.ServerBusyError(reason)
    return errors.SourceHTTPError(reason)


def sas(
    key: DelegationKey,
    resource: str,
    permission: str,
    kind: str,
    expiry: str,
    version: str = SAS_VERSION,
) -> str:
    """A user delegation SAS of ``resource`` (``/blob/<account>/<container>[/<blob>]``,
    unquoted) expiring at ``expiry`` (``%Y-%m-%dT%H:%M:%SZ``): the SDK's
    query fields in its order, the string-to-sign of ``version``."""
    if version < _OBJECT_IDS:
        raise ValueError(f"user delegation SAS version {version} is older than {_OBJECT_IDS}")
    # sp, st, se, resource, skoid, sktid, skt, ske, sks, skv, saoid, suoid, scid
    lines = [permission, "", expiry, resource, key.oid, key.tid, key.start, key.expiry, key.service, key.version,
             "", "", ""]  # fmt: skip
    delegated = key.delegated_user_tid if version >= _DELEGATED_USER else None
    if version >= _DELEGATED_USER:
        lines += [delegated or "", ""]  # skdutid, sduoid
    lines += ["", "", version, kind, "", ""]  # sip, spr, sv, sr, snapshot time, ses
    if version >= _REQUEST_BINDINGS:
        lines += ["", ""]  # srh, srq
    lines += ["", "", "", "", ""]  # rscc, rscd, rsce, rscl, rsct
    secret = base64.b64decode(key.value)
    signature = base64.b64encode(hmac.new(secret, "\n".join(lines).encode(), hashlib.sha256).digest()).decode()
    fields = [("se", expiry), ("sp", permission), ("sv", version), ("sr", kind), ("skoid", key.oid),
              ("sktid", key.tid), ("skt", key.start), ("ske", key.expiry), ("sks", key.service),
              ("skv", key.version)]  # fmt: skip
    if delegated:
        fields.append(("skdutid", delegated))
    fields.append(("sig", signature))
    return "&".join(f"{name}={quote(value, safe='/')}" for name, value in fields)  # as the SDK quotes


def _expiry(hours: float, now: float | None) -> str:
    return _xml_time((time.time() if now is None else now) + hours * 3600)


def blob_url(
    account: Endpoint, key: DelegationKey, container: str, blob: str, hours: float, now: float | None = None
) -> str:
    """The blob's URL (the SDK's) with a read-only SAS valid ``hours`` from ``now``."""
    path = f"{account.url}/{quote(container, safe='')}/{quote(blob, safe='/~')}"
    return f"{path}?{sas(key, f'/blob/{account.name}/{container}/{blob}', 'r', 'b', _expiry(hours, now))}"


def list_url(
    account: Endpoint, key: DelegationKey, container: str, params: Mapping[str, str], hours: float = 1.0
) -> str:
    """A List Blobs page of the container with a list-only container SAS."""
    query = urlencode({"restype": "container", "comp": "list", **params}, quote_via=quote)
    signed = sas(key, f"/blob/{account.name}/{container}", "l", "c", _expiry(hours, None))
    return f"{account.url}/{quote(container, safe='')}?{query}&{signed}"

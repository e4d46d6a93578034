"""AWS Signature Version 4 in the query string (a presigned S3 GET).

botocore's own query signer (``S3SigV4QueryAuth``) costs ~200 µs per URL
here (generic canonicalisation, ``urlsplit`` many times over); a GET of a
10 KiB object costs the libcurl loop less than that. This is the same
algorithm for the one request dlengine presigns, a GET of one object
path, in ~15 µs: the derived signing key is kept per day, region and
secret (as the two SHA-256 states its HMAC starts from), and the canonical
request is three lines of text.
``tests/test_signed.py`` checks that it signs byte for byte what botocore
signs. Credentials come from botocore's chain (``sources.s3``); nothing
here reads or keeps them beyond the derived key.

The URL carries the credential: only ``redact``-ed text may show it, and
the ledger keeps the ``s3://`` link, never this URL.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

__all__ = ["GetSigner", "presign_get"]

ALGORITHM = "AWS4-HMAC-SHA256"
_UNSIGNED = "UNSIGNED-PAYLOAD"
_lock = threading.Lock()
_keys: dict[tuple[str, str, str, str], bytes] = {}
_keyed: dict[bytes, tuple[Any, Any]] = {}


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The day's derived key (four HMACs), kept: one per day and region."""
    cache = (secret, date, region, service)
    with _lock:
        key = _keys.get(cache)
        if key is None:
            if len(_keys) > 64:
                _keys.clear()
            key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret}".encode(), date), region), service), "aws4_request")
            _keys[cache] = key
        return key


def _sign(key: bytes, text: str) -> str:
    """HMAC-SHA256 of ``text`` under ``key``, hex, from the key's two kept
    SHA-256 states (RFC 2104's inner and outer pads). ``hmac.digest``
    releases the GIL on every call and, with OpenSSL 3, fetches its digest
    by name under the library's locks: in a worker, whose curl thread
    hashes bodies meanwhile, that was ~4 µs of CPU and a wait for the GIL
    per URL, where this is under 1 µs and keeps the GIL (small updates)."""
    states = _pads(key)
    inner, outer = states[0].copy(), states[1].copy()
    inner.update(text.encode())
    outer.update(inner.digest())
    return outer.hexdigest()


def _pads(key: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    """The SHA-256 states after ``key``'s inner and outer pads (kept; only
    ever copied, so one may be shared by threads)."""
    with _lock:
        states = _keyed.get(key)
        if states is None:
            if len(_keyed) > 64:
                _keyed.clear()
            block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")  # (RFC 2104)
            states = _keyed[key] = (hashlib.sha256(bytes(b ^ 0x36 for b in block)),
                                    hashlib.sha256(bytes(b ^ 0x5C for b in block)))  # fmt: skip
        return states


def _enc(text: str) -> str:
    return quote(text, safe="-_.~")


@functools.lru_cache(maxsize=16)
def _canonical_query(access: str, scope: str, stamp: str, expires: int, names: str, token: str | None) -> str:
    """The signed query but the signature: the same for every object of a
    second (kept: percent-encoding it costs more than the signature)."""
    query = {
        "X-Amz-Algorithm": ALGORITHM,
        "X-Amz-Credential": f"{access}/{scope}",
        "X-Amz-Date": stamp,
        "X-Amz-Expires": str(expires),
        "X-Amz-SignedHeaders": names,
    }
    if token:
        query["X-Amz-Security-Token"] = token
    return "&".join(f"{_enc(k)}={_enc(v)}" for k, v in sorted(query.items()))


def presign_get(
    origin: str,
    host: str,
    path: str,
    credentials: tuple[str, str, str | None],
    region: str,
    signed_headers: Mapping[str, str],
    expires: int = 3600,
    now: float | None = None,
    service: str = "s3",
    method: str = "GET",
    params: Mapping[str, str] | None = None,
) -> str:
    """A presigned GET of ``origin + path`` (``path`` already percent-encoded
    as S3 wants it: ``/`` kept), valid ``expires`` seconds from ``now``.
    ``host`` is the Host header (the origin's host, default port dropped);
    ``credentials`` (access key, secret, session token or None);
    ``signed_headers`` (lower-case names) must then be sent with it."""
    access, secret, token = credentials
    stamp = _stamp(int(time.time() if now is None else now))
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    names, canonical_headers = _canonical_headers(host, tuple(signed_headers.items()))
    canonical_query = _canonical_query(access, scope, stamp, expires, names, token)
    if params:
        pairs = [tuple(pair.split("=", 1)) for pair in canonical_query.split("&")]
        pairs += [(_enc(k), _enc(v)) for k, v in params.items()]
        canonical_query = "&".join(f"{k}={v}" for k, v in sorted(pairs))  # by name, then value
    canonical = f"{method}\n{path}\n{canonical_query}\n{canonical_headers}\n{names}\n{_UNSIGNED}"
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{digest}"
    signature = _sign(signing_key(secret, stamp[:8], region, service), to_sign)
    return f"{origin}{path}?{canonical_query}&X-Amz-Signature={signature}"


@functools.lru_cache(maxsize=4)
def _stamp(second: int) -> str:
    """X-Amz-Date of a second (kept: formatting it was a tenth of a URL)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))


@functools.lru_cache(maxsize=64)
def _canonical_headers(host: str, signed: tuple[tuple[str, str], ...]) -> tuple[str, str]:
    """(SignedHeaders, the canonical header lines) of ``host`` and the
    signed headers: the same for every object of a bucket."""
    headers = {"host": host, **dict(signed)}
    names = ";".join(sorted(headers))
    return names, "".join(f"{k}:{' '.join(headers[k].split())}\n" for k in sorted(headers))


class _Second:
    """What every GET a signer signs within one second under one set of
    keys shares: the signed query, the canonical request's end, the
    string-to-sign's head and the day's key as its HMAC pad states."""

    __slots__ = ("credentials", "inner", "outer", "query", "rest", "second", "to_sign")

    def __init__(self, signer: GetSigner, second: int, credentials: tuple[str, str, str | None]) -> None:
        access, secret, token = credentials
        stamp = _stamp(second)
        scope = f"{stamp[:8]}/{signer.region}/{signer.service}/aws4_request"
        names, canonical_headers = _canonical_headers(signer.host, tuple(signer.headers.items()))
        self.second, self.credentials = second, credentials
        self.query = _canonical_query(access, scope, stamp, signer.expires, names, token)
        self.rest = f"\n{self.query}\n{canonical_headers}\n{names}\n{_UNSIGNED}"
        self.to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n"
        self.inner, self.outer = _pads(signing_key(secret, stamp[:8], signer.region, signer.service))

    def __repr__(self) -> str:  # (never the keys)
        return f"<sigv4 second {self.second}>"


class GetSigner:
    """``presign_get`` of one bucket's objects, what their URLs share
    worked out once a second (``_Second``): per object, one SHA-256 of
    the canonical request and the HMAC from kept pad states, ~2 us where
    ``presign_get`` takes ~4 (its caches looked up, the query sorted and
    the strings built again for every URL). The keys are asked of the
    caller for every URL (a refreshing chain refreshes there); new keys,
    or a new second, make a new ``_Second``."""

    __slots__ = ("_kept", "expires", "headers", "host", "origin", "prefix", "region", "service")

    def __init__(
        self,
        origin: str,
        host: str,
        prefix: str,
        region: str,
        signed_headers: Mapping[str, str],
        expires: int = 3600,
        service: str = "s3",
    ) -> None:
        """``prefix``: the path before each object's (percent-encoded) key."""
        self.origin, self.host, self.prefix, self.region = origin, host, prefix, region
        self.headers, self.expires, self.service = dict(signed_headers), expires, service
        self._kept: _Second | None = None

    def url(self, encoded_key: str, credentials: tuple[str, str, str | None], now: float | None = None) -> str:
        """The presigned GET of ``prefix + encoded_key``: the URL
        ``presign_get`` makes of it, byte for byte."""
        second = int(time.time() if now is None else now)
        kept = self._kept
        if kept is None or kept.second != second or kept.credentials != credentials:
            kept = self._kept = _Second(self, second, credentials)  # (threads racing here make equal ones)
        path = self.prefix + encoded_key
        digest = hashlib.sha256(f"GET\n{path}{kept.rest}".encode()).hexdigest()
        inner, outer = kept.inner.copy(), kept.outer.copy()
        inner.update(f"{kept.to_sign}{digest}".encode())
        outer.update(inner.digest())
        return f"{self.origin}{path}?{kept.query}&X-Amz-Signature={outer.hexdigest()}"

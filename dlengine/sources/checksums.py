"""Checksums a source offers in its response headers, normalised to hex."""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping

_PLAIN_MD5 = re.compile(r'^"?([0-9a-fA-F]{32})"?$')
_AMZ_PREFIX = "x-amz-checksum-"


def b64_to_hex(value: str) -> str | None:
    import base64  # (only for an answer that carries one: ~1.5 ms of a command's start otherwise)

    try:
        return base64.b64decode(value.strip(), validate=True).hex()
    except (binascii.Error, ValueError):
        return None


def md5_from_etag(etag: str | None) -> str | None:
    """An ETag that is a plain MD5 (32 hex digits, no ``-N`` multipart part)."""
    if not etag or etag.startswith("W/"):
        return None
    match = _PLAIN_MD5.match(etag)
    return match.group(1).lower() if match else None


def from_headers(lower: Mapping[str, str], *, partial: bool) -> dict[str, str]:
    """Whole-object checksums from response headers (lowercase names, as
    ``sources.answer`` holds them).

    ``partial``: the body is a range, so Content-MD5 (which describes the
    body sent, not the object) does not apply.
    """
    found: dict[str, str] = {}
    md5 = md5_from_etag(lower.get("etag"))
    if md5:
        found["md5"] = md5
    for part in lower.get("x-goog-hash", "").split(","):
        algo, _, value = part.strip().partition("=")
        digest = b64_to_hex(value) if value else None
        if algo in ("md5", "crc32c") and digest:
            found[algo] = digest
    for name, value in lower.items():
        if name.startswith(_AMZ_PREFIX) and name != _AMZ_PREFIX + "type":
            digest = b64_to_hex(value)
            if digest:
                found[name[len(_AMZ_PREFIX) :]] = digest
    if not partial and "content-md5" in lower:
        digest = b64_to_hex(lower["content-md5"])
        if digest:
            found["md5"] = digest
    return found

"""Hiding the secrets a link or a message can carry.

Signed links put their credential in the query (``X-Amz-Signature``,
``X-Goog-Signature``, Azure SAS ``sig``, ``token=``...), and a link may
carry ``user:password@``. Links end up in error messages, which the ledger
keeps and status and logs print: ``redact`` is applied where they are
stored and shown, so a secret never reaches the ledger's error text, a
status or a log line. The link itself stays in the ledger's objects table
(it is what gets downloaded), never in a message.

Only the values go: ``?X-Amz-Signature=***&X-Amz-Expires=3600`` still says
which kind of link it was and when it expires. Azure's ``se`` (expiry) and
``sp`` (permissions) are not secrets and are kept for that reason.

The logs' formatter that redacts every line is ``dlengine.logredact``'s
(this module is imported by commands that log nothing: not logging).
"""

from __future__ import annotations

import re

__all__ = ["MASK", "is_secret_param", "redact"]

MASK = "***"

# Query parameters whose value is a credential, by exact (lowercased) name...
_SECRET_PARAMS = frozenset(
    {
        "sig",  # Azure SAS
        "signature",  # CloudFront, generic
        "key",  # Google APIs
        "code",  # Azure Functions
        "skoid",  # Azure user-delegation SAS: the key's fields
        "sktid",
        "sks",
        "skv",
        "ske",
        "skt",
        "policy",  # CloudFront custom policy (signed)
        "awsaccesskeyid",  # S3 signature version 2
    }
)
# ... or by a part of it (x-amz-signature, x-amz-credential,
# x-amz-security-token, x-goog-signature, access_token, api_key, hmac...).
_SECRET_PARTS = ("signature", "credential", "token", "secret", "password", "passwd", "apikey", "api_key", "auth")


class _Patterns:
    """The patterns, compiled at the first text to redact (~0.5 ms: most
    commands redact nothing, and this module comes with the spec parser)."""

    def __init__(self) -> None:
        self.userinfo = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s@'\"<>]+@")
        self.query_param = re.compile(r"([?&;])([^=&;#\s'\"<>]+)=([^&;#\s'\"<>]*)")
        self.auth_header = re.compile(r"(?i)\b((?:proxy-)?authorization|cookie|x-api-key)(\s*[:=]\s*)([^\r\n,'\"]+)")
        self.bearer = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")


_patterns: _Patterns | None = None


def redact(text: str) -> str:
    """``text`` with every credential a link or a header line can carry
    replaced by ``***``; idempotent, and cheap when there is nothing to hide."""
    global _patterns
    if not text:
        return text
    if _patterns is None:
        _patterns = _Patterns()
    p = _patterns
    if "@" in text:
        text = p.userinfo.sub(rf"\1{MASK}@", text)
    if "=" in text:
        text = p.query_param.sub(_param, text)
    if ":" in text or "=" in text:
        text = p.auth_header.sub(rf"\1\2{MASK}", text)
    return p.bearer.sub(rf"\1 {MASK}", text)


def _param(match: re.Match[str]) -> str:
    lead, name, value = match.groups()
    return f"{lead}{name}={MASK}" if value and is_secret_param(name) else match.group(0)


def is_secret_param(name: str) -> bool:
    """Whether a query parameter of this name carries a credential."""
    lowered = name.lower()
    return lowered in _SECRET_PARAMS or any(part in lowered for part in _SECRET_PARTS)

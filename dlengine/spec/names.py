"""Links, object names, bucket names and secret headers: what a job may name.

Object names become paths under a bucket directory, so every rule here is
about never letting a name escape its bucket or collide with another one.
"""

from __future__ import annotations

import ipaddress
import os
import re
import unicodedata
from urllib.parse import quote, unquote, urlsplit

from dlengine.errors import SpecError
from dlengine.net.redirects import NOT_ON_THE_WIRE
from dlengine.providers import Provider
from dlengine.spec import hflink

ALLOWED_SCHEMES = ("http", "https", "s3", "gs", "az", "hf")
MAX_NAME_BYTES = 1024
MAX_SEGMENT_BYTES = 255  # NAME_MAX of ext4, xfs, btrfs

_SCHEME_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
# "data:...", "file:/etc/passwd", "mailto:x" -- but not "host:8080/path",
# which is a scheme-less link with a port.
# "file:/etc/passwd" has a scheme too: a port is one digit or more.
_SCHEME_OPAQUE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(?![0-9]+(?:[/?#]|$))")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HTTP_PARTS = re.compile(r"(https?://)([^/?#]*)(.*)", re.DOTALL)  # scheme, authority, the rest
# Characters that move the cursor, end a line or reorder text on a
# terminal: a name holding one forges rows of `ls` and `show`.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})
# "http//host/x", "https:/host/x", "s3//b/k": a scheme whose ':' or '//' went
# missing; prefixing "http://" would fetch host "http" instead.
_BROKEN_SCHEME = re.compile(rf"(?i)({'|'.join(ALLOWED_SCHEMES)})(//|:/(?!/)|:(?!//))")
# Hostnames that are the cloud metadata service without being an IP literal.
_METADATA_HOSTS = frozenset({"metadata.google.internal"})
_BUCKET_NAME = re.compile(r"[A-Za-z0-9_.-]{1,255}")
_HF_PART = re.compile(r"[A-Za-z0-9_.-]+")
_HF_MAX_REPO_ID = 96  # huggingface_hub's validate_repo_id limit
_SECRET_EXACT = frozenset({"authorization", "proxy-authorization", "cookie"})
_SECRET_PARTS = (
    "token",
    "secret",
    "password",
    "passwd",
    "api-key",
    "apikey",
    "key",
    "auth",
    "cookie",
    "credential",
    "signature",
)


def normalize_link(link: str, field: str) -> str:
    r"""A checked link; ``http://`` is added when it has no scheme.

    Only http, https, s3, gs, az and hf are allowed. HTTP links to a
    link-local address (169.254.0.0/16, fe80::/10) are refused: that is
    where cloud metadata services hand out credentials. So are a ``\`` in
    the host part (parsers disagree on where such a host ends:
    ``http://169.254.169.254\@127.0.0.1/`` is 127.0.0.1 to one and
    169.254.169.254 to another) and ``user:password@`` (credentials belong
    in a job's headers, which are kept out of the ledger). Downloads check
    the address actually connected as well (``dlengine.net.egress``).
    """
    text = link.strip()
    if text == "":
        raise SpecError(field, "link must not be empty")
    if _CONTROL.search(text):
        raise SpecError(field, f"link {_show(text)} contains a control character")
    text = _with_scheme(text, field)
    scheme, rest = text.split(":", 1)
    scheme = scheme.lower()
    text = f"{scheme}:{rest}"
    if scheme in ("http", "https"):
        text = _ascii_link(text, field)
    _check_authority(text, field)
    if scheme in ("http", "https"):
        _check_http_host(text, field)
    elif not urlsplit(text).netloc:
        raise SpecError(field, f"link {_show(text)} has no bucket: expected {scheme}://bucket/key")
    elif scheme == "hf":
        _check_hf_link(text, field)
    return text


def _ascii_link(link: str, field: str) -> str:
    """``link`` as it goes on the wire, as requests and Go's net/url (so
    AIStore) send it: a space or a non-ASCII character after the host
    percent-encoded as UTF-8 (``a b/é.txt`` -> ``a%20b/%C3%A9.txt``, still
    named ``é.txt``), a non-ASCII host IDNA-encoded. libcurl refuses a
    space ("URL rejected: Bad path"), and pycurl cannot pass on a URL that
    is not ASCII at all."""
    match = _HTTP_PARTS.fullmatch(link)
    if match is None:
        return link
    scheme, authority, rest = match.groups()
    try:
        if not authority.isascii():
            authority = authority.encode("idna").decode("ascii")
        rest = NOT_ON_THE_WIRE.sub(lambda char: quote(char.group(), safe=""), rest)
    except UnicodeError:  # a label IDNA refuses, a lone surrogate
        raise SpecError(field, f"link {_show(_no_userinfo(link))} is not a valid URL (host or characters)") from None
    return scheme + authority + rest


def _check_authority(link: str, field: str) -> None:
    """No backslash and no ``user:password@`` in the host part, whatever
    the scheme (see ``normalize_link``); in ``hf://name@revision/...`` the
    ``@`` is a revision."""
    try:
        parts = urlsplit(link)
    except ValueError as exc:  # an unclosed "[" of an IPv6 host: urllib's "Invalid IPv6 URL"
        raise SpecError(field, f"link {_show(_no_userinfo(link))} is malformed: {exc}") from None
    if "\\" in parts.netloc:
        raise SpecError(field, f"link {_show(_no_userinfo(link))} has a '\\' in its host part; refused")
    if "@" in parts.netloc and parts.scheme != "hf":
        raise SpecError(
            field,
            f"link {_show(_no_userinfo(link))} carries user:password@; put credentials in the job's headers",
        )


def _check_hf_link(link: str, field: str) -> None:
    """An ``hf://`` link names a valid repo id, revision and file."""
    ref = hflink.parse_link(link, field)
    _validate_hf_repo_id(ref.repo_id, field)
    if any(char.isspace() or ord(char) < 0x20 for char in ref.revision):
        raise SpecError(field, f"link {_show(link)} has an invalid revision {ref.revision!r}")


def _with_scheme(text: str, field: str) -> str:
    match = _SCHEME_URL.match(text)
    broken = None if match else _BROKEN_SCHEME.match(text)
    if broken is not None:
        raise SpecError(field, f"link {_show(text)} is malformed: expected {broken.group(1).lower()}://host/path")
    match = match or _SCHEME_OPAQUE.match(text)
    if match is None:
        # "//host/x" is scheme-relative; "host/x" has nothing at all.
        return "http:" + text if text.startswith("//") else "http://" + text
    scheme = match.group(1).lower()
    if scheme not in ALLOWED_SCHEMES:
        raise SpecError(
            field,
            f"link scheme {scheme!r} is not supported (allowed: {', '.join(ALLOWED_SCHEMES)})",
        )
    return text


def _check_http_host(link: str, field: str) -> None:
    parts = urlsplit(link)
    host = parts.hostname or ""
    if host == "":
        raise SpecError(field, f"link {_show(link)} has no host")
    if any(char.isspace() for char in host):  # libcurl refuses it, but only when the object is tried
        raise SpecError(field, f"link {_show(link)} has a space in its host {host!r}")
    try:
        parts.port  # noqa: B018 - urllib validates the port lazily
    except ValueError as exc:
        raise SpecError(field, f"link {_show(link)} has an invalid port") from exc
    if host.rstrip(".") in _METADATA_HOSTS or _is_link_local(host):
        raise SpecError(
            field,
            f"link {_show(link)} points at a link-local address (the cloud metadata service); refused",
        )


def _no_userinfo(link: str) -> str:
    """``link`` without what precedes ``@`` in its authority (a password
    must not be echoed in an error message either)."""
    scheme, sep, rest = link.partition("://")
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return link
    return f"{scheme}{sep}***@{authority.rpartition('@')[2]}{slash}{path}"


def _is_link_local(host: str) -> bool:
    address = _literal_ip(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address is not None and address.is_link_local


def _literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    # The resolver also takes "2852039166", "0xa9fea9fe" or "169.254.43518"
    # as IPv4 addresses: catch those spellings of 169.254.169.254 too.
    if re.fullmatch(r"[0-9a-fA-FxX.]+", host):
        import socket  # (only for such a host: the spec is parsed by commands that open no socket)

        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def derive_name(link: str, field: str = "link") -> str:
    """The object name a link gives: its last path segment, percent-decoded.

    Query and fragment are dropped: ``http://h/a/x.tar?sig=1#f`` -> ``x.tar``;
    a path ending in ``/`` is named by the segment before it, as AIStore's
    ``path.Base`` does: ``http://h/a/dir/`` -> ``dir``.
    """
    segment = urlsplit(link).path.rstrip("/").rsplit("/", 1)[-1]
    if segment == "":
        raise SpecError(
            field,
            f"cannot derive an object name from {_show(link)}: "
            "its path has no last segment; name the object explicitly",
        )
    return _percent_decoded(segment, field)


def normalize_object_name(name: str, field: str) -> str:
    """A given object name as AIStore normalises it (``NormalizeObjName``):
    what follows ``?`` (or ``#``) is dropped and the rest percent-decoded,
    so ``dir%2Ffile?alt=media`` is ``dir/file``; then it is validated, so
    ``..%2Foutside`` is refused. A name that is only a query (``?x``) stays.
    """
    path = re.split(r"[?#]", name, maxsplit=1)[0]
    decoded = _percent_decoded(path, field) if path else name
    validate_object_name(decoded, field)
    return decoded


def escape_object_name(name: str) -> str:
    """The inverse of ``normalize_object_name`` for a stored job: ``%``,
    ``?`` and ``#`` escaped, so reading the job back gives the same name."""
    return name.replace("%", "%25").replace("?", "%3F").replace("#", "%23")


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _percent_decoded(text: str, field: str) -> str:
    """``unquote``, but a malformed escape (``%zz``) or bytes that are not
    UTF-8 are refused, as Go's ``url.PathUnescape`` refuses them."""
    if "%" not in text:
        return text
    if _BAD_ESCAPE.search(text):
        raise SpecError(field, f"{_show(text)} has a malformed percent-escape")
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise SpecError(field, f"{_show(text)} percent-decodes to bytes that are not UTF-8") from None


def validate_object_name(name: str, field: str) -> None:
    """Refuse a name that is empty, absolute, ends with ``/``, has an empty,
    ``.`` or ``..`` segment, a NUL or a backslash, or is too long."""
    if name == "":
        raise SpecError(field, "object name must not be empty")
    if "\x00" in name:
        raise SpecError(field, f"object name {_show(name)} contains NUL")
    bad = unprintable(name)
    if bad is not None:
        raise SpecError(field, f"object name {_show(name)} contains the control character U+{ord(bad):04X}")
    if "\\" in name:
        raise SpecError(field, f"object name {_show(name)} contains a backslash")
    if name.startswith("/"):
        raise SpecError(field, f"object name {_show(name)} is an absolute path")
    if name.endswith("/"):
        raise SpecError(field, f"object name {_show(name)} ends with '/'")
    if _utf8_len(name, field) > MAX_NAME_BYTES:
        raise SpecError(
            field,
            f"object name {_show(name)} is longer than {MAX_NAME_BYTES} bytes",
        )
    for segment in name.split("/"):
        _check_segment(name, segment, field)


def _check_segment(name: str, segment: str, field: str) -> None:
    if segment == "":
        raise SpecError(field, f"object name {_show(name)} has an empty segment")
    if segment in (".", ".."):
        raise SpecError(field, f"object name {_show(name)} has a {segment!r} segment")
    if _utf8_len(segment, field) > MAX_SEGMENT_BYTES:
        raise SpecError(
            field,
            f"object name {_show(name)} has a segment longer than {MAX_SEGMENT_BYTES} bytes",
        )


def _utf8_len(text: str, field: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:  # lone surrogates from JSON "\ud800"
        raise SpecError(field, f"{_show(text)} is not valid Unicode") from exc


def unprintable(text: str) -> str | None:
    """The first character of ``text`` that a terminal would not print as
    itself (C0/C1 controls, DEL, line separators, bidi overrides), or None."""
    if text.isascii() and text.isprintable():
        return None  # (ASCII's unprintable characters are its controls, all Cc: a listed key's ~3 µs to ~0.1)
    for char in text:
        if char in _BIDI_CONTROLS or unicodedata.category(char) in _UNPRINTABLE_CATEGORIES:
            return char
    return None


def escape_unprintable(text: str) -> str:
    """``text`` with every character ``unprintable`` finds written as an
    escape (``\\n``, ``\\x1b``, ``\\u202e``): for names and descriptions
    printed on a terminal, where they would forge rows or colours."""
    if unprintable(text) is None:
        return text
    return "".join(repr(char)[1:-1] if unprintable(char) else char for char in text)


def join_subdir(subdir: str, name: str, field: str = "subdir") -> str:
    """``subdir`` + ``/`` + ``name``; a trailing ``/`` on subdir is optional."""
    if subdir == "":
        return name
    base = subdir.removesuffix("/")
    validate_object_name(base, field)
    return f"{base}/{name}"


def validate_bucket_name(name: str, provider: Provider, field: str = "bucket.name") -> None:
    """Bucket names are one path segment; HF repo ids are ``[org/]name``."""
    if provider == Provider.HF:
        _validate_hf_repo_id(name, field)
        return
    if provider == Provider.DIR:
        validate_directory(name, field)
        return
    if not _BUCKET_NAME.fullmatch(name) or name in (".", ".."):
        raise SpecError(
            field,
            f"invalid bucket name {_show(name)}: use 1-255 letters, digits, '_', '.' or '-'",
        )


def validate_directory(name: str, field: str = "bucket.name") -> None:
    """A ``dir`` bucket is named by its absolute, normalized path (the
    process that writes it may run in any working directory)."""
    if "\0" in name or not name.startswith("/") or name.startswith("//") or os.path.normpath(name) != name:
        raise SpecError(field, f"a 'dir' bucket is an absolute directory path like /srv/data, got {_show(name)}")
    if name == "/":
        raise SpecError(field, "the root directory cannot be a destination")


def _validate_hf_repo_id(name: str, field: str) -> None:
    # The Hub itself still accepts legacy ids without an org ("gpt2").
    parts = name.split("/")
    if (
        len(parts) > 2
        or not all(_HF_PART.fullmatch(part) for part in parts)
        or ".." in name
        or "--" in name
        or name.endswith(".git")
        or len(name) > _HF_MAX_REPO_ID
    ):
        raise SpecError(
            field,
            f"invalid HuggingFace repo id {_show(name)}: expected 'org/name' "
            "(letters, digits, '_', '.', '-'; no '..' or '--')",
        )


def is_secret_header(name: str) -> bool:
    """True for headers that carry credentials and must never be stored."""
    lowered = name.strip().lower()
    return lowered in _SECRET_EXACT or any(part in lowered for part in _SECRET_PARTS)


def _show(text: str) -> str:
    """``repr`` of a user string, cut so an error message stays one line."""
    return repr(text if len(text) <= 200 else text[:200] + "...")

"""The Hub's download protocol without an HTTP library: what the libcurl
loop needs to fetch an ``hf://`` file (``HubRoute``), and what every Hub
client of dlengine shares (endpoint, token, what the Hub's answers mean).

A worker imports this module, not ``sources.hf``: it must not pay for
urllib3 or huggingface_hub to download files whose bytes come through
libcurl (``engine.curl``).

One file, one transfer of the loop: ``GET {endpoint}/[datasets/]{repo}/
resolve/{revision}/{path}`` with the token. A small file answers 200
(``ETag`` = its git blob id, ``X-Repo-Commit``), ranged on resume; an LFS
file answers 302 with ``X-Linked-Etag`` (its sha256), ``X-Linked-Size``
and a ``Location`` on a CDN. The CDN is asked without the token (another
origin) and without the Hub's validators: its URL names those very bytes,
so a resume there is a plain ``Range`` when the Hub still names the
version the kept bytes belong to, and nothing is asked at all when the
stored copy is that version (not modified) or every byte is kept already.
What is recorded is what the Hub said: etag = ``"<sha256>"`` for LFS
files, ``"<blob id>"`` for the others, the commit as the version, the
sha256 as the checksum, whatever the CDN's own headers say.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from dlengine import errors
from dlengine.net import redirects
from dlengine.sources import answer as answers
from dlengine.sources.base import ObjectInfo, Request

log = logging.getLogger("dlengine.hf")

DEFAULT_ENDPOINT = "https://huggingface.co"
DENIED = "repository is private or gated: set HF_TOKEN (or it does not exist)"
DENIED_WITH_TOKEN = (
    "repository is private or gated and the token has no access to it"
    " (a gated repository needs its terms accepted on the Hub)"
)

_BUSY = frozenset({408, 429})
_SHA256 = re.compile(r"[0-9a-f]{64}")


# ------------------------------------------------------------ environment


def available() -> bool:
    """Whether huggingface_hub is installed (without importing it: slow)."""
    import importlib.util

    return importlib.util.find_spec("huggingface_hub") is not None


def endpoint() -> str:
    """``HF_ENDPOINT`` (a mirror, or a test Hub), as huggingface_hub reads it."""
    return os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or DEFAULT_ENDPOINT


_token_lock = threading.Lock()
_token_cache: list[str | None] = []  # [token] once read: one read per process


def token() -> str | None:
    """``HF_TOKEN`` (or the older ``HUGGING_FACE_HUB_TOKEN``), else the token
    file; None without one. Read once per process: a worker sends thousands
    of requests, and the file (or huggingface_hub's lookup) is not free."""
    with _token_lock:
        if not _token_cache:
            _token_cache.append(_read_token())
        return _token_cache[0]


def forget_token() -> None:
    """Read the token again at its next use (after it was changed)."""
    with _token_lock:
        _token_cache.clear()


def _read_token() -> str | None:
    env = os.environ.get("HF_TOKEN", "").strip() or os.environ.get("HUGGING_FACE_HUB_TOKEN", "").strip()
    value = env or _stored_token()
    if value and not (value.isascii() and value.isprintable()):
        # a header cannot carry it, and the HTTP library's error would quote it
        raise errors.SourceDeniedError("the HuggingFace token holds characters an HTTP header cannot carry")
    return value or None


def token_path() -> Path:
    """Where ``hf auth login`` stores the token, as huggingface_hub finds it."""
    explicit = os.environ.get("HF_TOKEN_PATH", "").strip()
    if explicit:
        return Path(os.path.expandvars(explicit)).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "").strip() or "~/.cache"
    home = os.environ.get("HF_HOME", "").strip() or os.path.join(cache, "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "token"


def _stored_token() -> str:
    """The token file; huggingface_hub is asked only for a token it makes
    itself (OIDC in CI, ``HF_OIDC_RESOURCE``), which a file cannot hold."""
    try:
        return token_path().read_text().strip()
    except FileNotFoundError:
        pass
    except OSError as exc:  # an unreadable token file means no token
        log.warning("cannot read the HuggingFace token file (%s); going on without it", type(exc).__name__)
        return ""
    if not os.environ.get("HF_OIDC_RESOURCE") or not available():
        return ""
    try:
        from huggingface_hub import get_token

        return str(get_token() or "").strip()
    except Exception as exc:  # noqa: BLE001 - no token from it means no token
        log.warning("cannot get a token from huggingface_hub (%s); going on without it", type(exc).__name__)
        return ""


def redact(text: str, secret: str | None) -> str:
    """``text`` without ``secret`` in it: messages end up in the ledger."""
    return text.replace(secret, "***") if secret else text


def with_token(headers: Mapping[str, str], secret: str | None) -> dict[str, str]:
    """``headers`` with the token as ``Authorization`` (unless they carry one:
    a job's ``--hf-auth``)."""
    out = dict(headers)
    if secret and not any(name.lower() == "authorization" for name in out):
        out["Authorization"] = f"Bearer {secret}"
    return out


# ------------------------------------------------------- what answers mean


def _get(headers: Mapping[str, str], name: str) -> str | None:
    """A header whatever the case of its name (the Hub's HTTP/2 lowercases them)."""
    value = headers.get(name)
    if value is None:
        lower = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lower), None)
    return value


def denied_reason(authorized: bool) -> str:
    return DENIED_WITH_TOKEN if authorized else DENIED


def status_error(
    what: str, status: int, headers: Mapping[str, str], authorized: bool, reason: str = ""
) -> errors.DlengineError:
    """The dlengine error of an HTTP error status from the Hub."""
    code = _get(headers, "X-Error-Code") or ""
    if status in (401, 403) or code == "GatedRepo":
        return errors.SourceDeniedError(f"{what}: HTTP {status}: {denied_reason(authorized)}")
    if status in _BUSY or status >= 500:
        retry_after = answers.parse_retry_after(_get(headers, "Retry-After"))
        return errors.ServerBusyError(f"{what}: HTTP {status} {reason}".rstrip(), retry_after=retry_after)
    if status in (404, 410):
        return errors.SourceNotFoundError(f"{what}: HTTP {status} {code or reason or 'not found'}".rstrip())
    return errors.SourceHTTPError(f"{what}: HTTP {status} {code or reason}".rstrip())


def normalize_etag(value: str | None) -> str | None:
    """``"<hex>"``: huggingface_hub's normalisation (no ``W/``, quoted)."""
    if not value:
        return None
    return '"' + value.strip().removeprefix("W/").strip('"') + '"'


def is_file_redirect(headers: Mapping[str, str]) -> bool:
    """A redirect of a file's bytes to a CDN (not a renamed repo)."""
    return _get(headers, "X-Linked-Etag") is not None or _get(headers, "X-Linked-Size") is not None


def hub_info(url: str, status: int, headers: Mapping[str, str], size: int | None = None) -> ObjectInfo:
    """What the Hub says of a file: its etag (sha256 of an LFS file, else
    its blob id), size, commit and sha256; ``size``: the body's, when the
    Hub's answer is the file itself."""
    linked = _get(headers, "X-Linked-Etag")
    etag = normalize_etag(linked or _get(headers, "ETag"))
    linked_size = _int(_get(headers, "X-Linked-Size"))
    digest = (etag or "").strip('"')
    sha256 = digest if linked and _SHA256.fullmatch(digest) else None
    return ObjectInfo(
        key=url,
        size=linked_size if linked_size is not None else size,
        etag=etag,
        version=_get(headers, "X-Repo-Commit") or None,
        checksums={"sha256": sha256} if sha256 else {},
    )


def merged(hub: ObjectInfo, cdn: ObjectInfo) -> ObjectInfo:
    """What the Hub said about a file, completed by what the CDN said."""
    return replace(hub, size=hub.size if hub.size is not None else cdn.size, etag=hub.etag or cdn.etag)


def resume_point(request: Request, info: ObjectInfo) -> tuple[int, str | None]:
    """(offset, If-Range for the CDN). The kept bytes belong to the file
    the Hub names now when its etag is the one they were written under;
    the CDN's URL is then specific to those bytes."""
    if request.offset <= 0:
        return 0, None
    if info.etag:
        return (request.offset, None) if request.if_range == info.etag else (0, None)
    return request.offset, request.if_range  # no etag from the Hub: let the CDN judge


def _int(value: object) -> int | None:
    text = str(value).strip() if value is not None else ""
    return int(text) if text.isdigit() else None


# ------------------------------------------------------- the libcurl route


Outcome = tuple[ObjectInfo, int, bool]
"""(info, offset where the body starts, not modified)."""


@dataclass
class HubRoute:
    """One ``hf://`` file as the libcurl loop fetches it (``engine.curl.Route``):
    the resolve URL with the token first, then the CDN it redirects to."""

    link: str
    url: str  # the resolve URL: its origin, the Hub's, alone gets the token
    headers: dict[str, str]
    secret: str | None = None
    hub: ObjectInfo | None = None  # what the Hub said, once it redirected to the CDN
    cdn: str = field(default="", repr=False)  # the CDN's (signed) URL

    def redirected(self, request: Request, status: int, headers: Mapping[str, str], target: str) -> Request | Outcome:
        """The request to send to ``target``, or the outcome when there is
        nothing to ask the CDN for (not modified, every byte kept)."""
        if self.hub is not None or not is_file_redirect(headers):
            return replace(request, key=target)  # the Hub on its own origin (a renamed repo), or the CDN's own hops
        info = hub_info(self.url, status, headers)
        self.hub, self.cdn = info, target
        if info.etag and request.if_none_match == info.etag:
            return info, 0, True
        offset, if_range = resume_point(request, info)
        if offset and offset == info.size:
            return info, offset, False  # every byte is kept already
        plain = {k: v for k, v in request.headers.items() if not _secret(k)}
        return Request(target, offset, if_range, headers=plain, timeout=request.timeout)

    def interpret(
        self, request: Request, status: int, headers: Mapping[str, str], reason: str, max_size: int | None
    ) -> Outcome:
        """The final answer, the Hub's (a small file) or the CDN's."""
        if self.hub is None and status >= 400:
            raise status_error(self.link, status, headers, self.secret is not None or _authorized(request), reason)
        got = answers.interpret(request, status, headers, reason, max_size=max_size)
        if self.hub is not None:
            return merged(self.hub, got.info), got.offset, got.not_modified
        info = hub_info(self.url, status, headers, got.info.size)
        answers.check_size(self.link, info.size, max_size)
        return info, got.offset, got.not_modified

    def segment_validator(self, headers: Mapping[str, str]) -> str | None:
        """An LFS file may come from its CDN in ranged segments: the CDN's
        URL names those bytes (the Hub's sha256) and that sha256 verifies
        the whole once every segment is in, so each segment is guarded by
        the CDN's own strong ETag if it sends one, by its range alone if
        not (as a resume there is: ``resume_point``). A file the Hub serves
        itself, or one without a sha256 and size, comes in one stream."""
        hub = self.hub
        if hub is None or "sha256" not in hub.checksums or hub.size is None:
            return None
        etag = _get(headers, "ETag") or ""
        return "" if etag.startswith("W/") else etag

    def names(self, validator: str) -> bool:
        """Whether the Hub's redirect was for the file ``validator`` (an
        etag recorded in a work file's .meta) names."""
        return self.hub is not None and bool(self.hub.etag) and self.hub.etag == validator

    def reword(self, exc: BaseException) -> BaseException:
        """``exc`` naming the link instead of a (signed) CDN URL, and never
        quoting the token."""
        if not isinstance(exc, errors.DlengineError):
            return exc
        message = str(exc)
        if self.cdn:
            plain = self.cdn.split("?", 1)[0]
            message = message.replace(self.cdn, plain)
            if plain in message:
                message = f"{self.link}: CDN {message}"
        message = redact(message, self.secret)
        if message == str(exc):
            return exc
        if isinstance(exc, errors.ServerBusyError):
            return errors.ServerBusyError(message, retry_after=exc.retry_after)
        return type(exc)(message, code=exc.code)


def _secret(name: str) -> bool:
    from dlengine.spec.names import is_secret_header

    return is_secret_header(name)


def _authorized(request: Request) -> bool:
    return any(name.lower() == "authorization" for name in request.headers)


def route(link: str, headers: Mapping[str, str]) -> HubRoute:
    """How the libcurl loop fetches the file an ``hf://`` link names, with
    a job's ``headers`` (its own Authorization, from ``--hf-auth``, wins
    over the process's token)."""
    from dlengine.spec import hflink

    try:
        url = hflink.parse_link(link).resolve_url(endpoint())
    except errors.SpecError as exc:
        raise errors.PermanentError(str(exc)) from None
    secret = None if _authorized(Request(url, headers=headers)) else token()
    return HubRoute(link, url, with_token(headers, secret), secret)


def same_origin(a: str, b: str) -> bool:
    return redirects.same_origin(a, b)

"""HuggingFace Hub: repositories listed through the Hub's API, files
fetched through their resolve URLs over plain HTTP.

Listing (backend jobs with ``provider: "hf"``, the CLI's ``--hf-*`` flags):
``GET /api/{type}s/{repo}/tree/{commit}?recursive=true`` page after page,
as ``HfApi.list_repo_tree`` asks it, at the commit the revision points to,
so the pages of one listing never mix two commits. huggingface_hub itself
is not imported: it costs more than a small download (it is asked only
for a token it makes itself, ``HF_OIDC_RESOURCE``).

Bytes: ``GET {endpoint}/[datasets/]{repo}/resolve/{revision}/{path}``
without following redirects. A small file answers 200 (``ETag`` = its git
blob id, ``X-Repo-Commit``), ranged on resume; an LFS file answers 302 with
``X-Linked-Etag`` (its sha256), ``X-Linked-Size`` and a ``Location`` on a
CDN, whose bytes come through the HTTP source, ranged on resume. LFS files
are verified by sha256, the others by size and ETag. A worker fetches
them through its libcurl loop instead (``sources.hfroute``, the same
protocol); this source serves the HEADs of the CLI, write-through buckets
and throttled jobs.

One identity for a file in the listing and in the download: etag =
``"<sha256>"`` for LFS files, ``"<blob id>"`` for the others, so the
dispatcher's comparison (same link, size, etag) skips unchanged files at a
new commit. The download records the commit its bytes came from as the
version; the listing leaves the version empty on purpose, since it would
make every file of a new commit look changed.

The token (``HF_TOKEN``, else the file huggingface_hub's login writes) is
read once per process, at its first use, sent to the Hub's origin only
(never to a CDN on another origin, as huggingface_hub does), and never
appears in a message: the ledger keeps links and errors, never request
headers.

What a revision points to is asked with one plain GET
(``/api/{type}s/{repo}/revision/{rev}?expand=sha``): a re-run whose
revision still names the commit it listed last needs nothing else.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin

from dlengine import errors
from dlengine.sources.base import ObjectInfo, Request, Selection, Stream
from dlengine.sources.hfroute import (  # the Hub's protocol, shared with the libcurl route
    DEFAULT_ENDPOINT,
    DENIED,
    DENIED_WITH_TOKEN,
    available,
    denied_reason,
    endpoint,
    forget_token,
    hub_info,
    is_file_redirect,
    merged,
    normalize_etag,
    redact,
    resume_point,
    same_origin,
    status_error,
    token,
    token_path,
)
from dlengine.spec import hflink
from dlengine.spec.model import HubOptions
from dlengine.spec.names import is_secret_header

if TYPE_CHECKING:  # urllib3 (and sources.http) imported by HFSource only: a listing goes through sources.hubapi
    import urllib3

    from dlengine.sources.hubapi import HubAPI

__all__ = [
    "DEFAULT_ENDPOINT",
    "DENIED",
    "DENIED_WITH_TOKEN",
    "EXTRA",
    "HFSource",
    "HubLister",
    "available",
    "denied_reason",
    "endpoint",
    "file_info",
    "forget_token",
    "normalize_etag",
    "redact",
    "resolve_url",
    "same_origin",
    "selects",
    "status_error",
    "token",
    "token_path",
]

log = logging.getLogger("dlengine.hf")

EXTRA = "pip install 'dlengine[hf]'"
API_TRIES = 4  # requests to the Hub's API per page when it is busy
MAX_API_WAIT = 10.0  # seconds between two of them at most

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_HUB_REDIRECTS = 5
_SHA256 = re.compile(r"[0-9a-f]{64}")
_BASE_HEADERS = {"Accept-Encoding": "identity", "User-Agent": "dlengine"}


# ------------------------------------------------------------ environment


def resolve_url(link: str) -> str:
    """The resolve URL an ``hf://`` link stands for, on the current endpoint."""
    try:
        return hflink.parse_link(link).resolve_url(endpoint())
    except errors.SpecError as exc:
        raise errors.PermanentError(str(exc)) from None


# ------------------------------------------------------------------ bytes


class _NoBody:
    """A stream without a body: not modified, or every byte already kept."""

    def __init__(self, info: ObjectInfo, offset: int, not_modified: bool) -> None:
        self.info = info
        self.offset = offset
        self.not_modified = not_modified

    def chunks(self, size: int) -> Iterator[bytes]:
        return iter(())

    def close(self) -> None:
        pass


class HFSource:
    """Files of Hub repositories, keyed by resolve URL. One instance per
    process: the urllib3 pools are thread-safe."""

    def __init__(self, pool_size: int = 16) -> None:
        from dlengine.sources import http

        self._pool = http.guarded_pool_manager(num_pools=16, maxsize=pool_size)
        self._cdn = http.HTTPSource(pool_size=pool_size)

    def stat(self, key: str, headers: Mapping[str, str] | None = None, timeout: float = 60.0) -> ObjectInfo:
        """Size, etag, commit and sha256 of a file (one HEAD to the Hub)."""
        sent, secret = self._hub_headers(Request(key, headers=dict(headers or {})))
        response = self._hub("HEAD", key, sent, timeout, secret)
        try:
            _raise_for_hub_status(response, key, authorized=secret is not None)
            return _hub_info(key, response)
        finally:
            _discard(response)

    def list(self, prefix: str = "", suffix: str = "") -> Iterator[ObjectInfo]:
        raise errors.PermanentError("a Hub file cannot be listed: use a backend job with provider hf")

    def api_json(self, url: str, what: str, timeout: float = 60.0) -> Any:
        """The JSON answer of one GET to the Hub's API (with the token)."""
        return self.api_page(url, what, timeout)[0]

    def api_page(self, url: str, what: str, timeout: float = 60.0) -> tuple[Any, str | None]:
        """The JSON answer of one GET to the Hub's API, and the URL of the
        next page (``Link: <url>; rel="next"``, on the Hub's origin only:
        it gets the token)."""
        sent, secret = self._hub_headers(Request(url, headers={"Accept": "application/json"}))
        response = self._hub("GET", url, sent, timeout, secret)
        try:
            if response.status >= 400:
                raise status_error(what, response.status, response.headers, secret is not None, response.reason or "")
            if response.status != 200:
                raise errors.SourceHTTPError(f"{what}: unexpected HTTP {response.status} from the Hub")
            try:
                body = json.loads(response.read())
            except ValueError:
                raise errors.SourceHTTPError(f"{what}: the Hub's answer is not JSON") from None
            return body, _next_page(url, response.headers.get("Link"), what)
        finally:
            _discard(response)

    def open(self, request: Request) -> Stream:
        sent, secret = self._hub_headers(request)
        response = self._hub("GET", request.key, sent, request.timeout, secret)
        if response.status in _REDIRECTS and response.headers.get("Location"):
            return self._from_cdn(request, response, secret)
        try:
            return _from_hub(request, response, authorized=secret is not None)
        except BaseException:
            _discard(response)
            raise

    def _hub_headers(self, request: Request) -> tuple[dict[str, str], str | None]:
        """Headers for the Hub (conditions, the token) and the token sent."""
        from dlengine.sources.http import conditional_headers

        headers = {**_BASE_HEADERS, **request.headers, **conditional_headers(request)}
        secret = token()
        if secret and not any(name.lower() == "authorization" for name in headers):
            headers["Authorization"] = f"Bearer {secret}"
        return headers, secret

    def _hub(
        self, method: str, url: str, headers: dict[str, str], timeout: float, secret: str | None
    ) -> urllib3.BaseHTTPResponse:
        """A request to the Hub that follows its own redirects (a renamed
        repo) on its origin, and returns a file's redirect to a CDN."""
        import urllib3

        from dlengine.sources.http import translate

        for _ in range(_MAX_HUB_REDIRECTS):
            try:
                response = self._pool.request(
                    method, url, headers=headers, preload_content=False, redirect=False,
                    timeout=urllib3.Timeout(connect=timeout, read=timeout),
                )  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - translated in one place
                raise _reworded(translate(exc, url), secret) from None
            location = response.headers.get("Location")
            target = urljoin(url, location or "")
            if not location or response.status not in _REDIRECTS or _is_file_redirect(response):
                return response
            if not same_origin(target, url):
                return response
            _discard(response)
            url = target
        raise errors.SourceHTTPError(f"{url}: more than {_MAX_HUB_REDIRECTS} redirects on the Hub")

    def _from_cdn(self, request: Request, response: urllib3.BaseHTTPResponse, secret: str | None) -> Stream:
        info = _hub_info(request.key, response)
        location = urljoin(request.key, response.headers["Location"])
        _discard(response)
        if info.etag and request.if_none_match == info.etag:
            return _NoBody(info, 0, not_modified=True)
        offset, if_range = resume_point(request, info)
        if offset and offset == info.size:
            return _NoBody(info, offset, not_modified=False)  # every byte is kept already
        headers = _cdn_headers(request, location, secret)
        cdn = Request(location, offset, if_range, headers=headers, timeout=request.timeout)
        try:
            stream = self._cdn.open(cdn)
        except errors.DlengineError as exc:
            raise _reworded(exc, secret, location, request.key) from None
        stream.info = merged(info, stream.info)
        return stream


def _next_page(url: str, link: str | None, what: str) -> str | None:
    """The ``rel="next"`` target of a ``Link`` header, as requests reads it."""
    for part in (link or "").split(","):
        target, _, params = part.strip().partition(";")
        if target.startswith("<") and target.endswith(">") and re.search(r"rel=\"?next\"?", params):
            nxt = urljoin(url, target[1:-1])
            if not same_origin(nxt, url):
                raise errors.SourceHTTPError(f"{what}: the Hub's next page is on another origin; refused")
            return nxt
    return None


def _from_hub(request: Request, response: urllib3.BaseHTTPResponse, *, authorized: bool) -> Stream:
    """The Hub's own answer: the bytes of a small file, 304, or an error."""
    status = response.status
    if status == 304:
        _discard(response)  # an unread 304 left on a pooled connection breaks its next request
        return _NoBody(_hub_info(request.key, response), 0, not_modified=True)
    if status == 416 and request.offset > 0:
        if _kept_whole(response, request):
            info = _hub_info(request.key, response, partial=True)
            return _http_stream(response, info, request.offset, body=False)
        raise errors.SourceChangedError(f"{request.key}: range not satisfiable; the file changed")
    _raise_for_hub_status(response, request.key, authorized=authorized)
    if status not in (200, 206):
        raise errors.SourceHTTPError(f"{request.key}: unexpected HTTP {status} from the Hub")
    partial = status == 206
    info = _hub_info(request.key, response, partial=partial)
    return _http_stream(response, info, request.offset if partial else 0)


def _http_stream(response: urllib3.BaseHTTPResponse, info: ObjectInfo, offset: int, body: bool = True) -> Stream:
    from dlengine.sources.http import HTTPStream

    return HTTPStream(response, info, offset, False, body=body)


def _raise_for_hub_status(response: urllib3.BaseHTTPResponse, url: str, *, authorized: bool) -> None:
    if response.status >= 400:  # urllib3's headers ignore case, as the Hub's HTTP/2 lowercases them
        raise status_error(url, response.status, response.headers, authorized, response.reason or "")


def _kept_whole(response: urllib3.BaseHTTPResponse, request: Request) -> bool:
    """A 416 to ``bytes=N-`` of the version we hold, whose size is N."""
    total = str(response.headers.get("Content-Range", "")).rpartition("/")[2]
    etag = normalize_etag(response.headers.get("ETag"))
    return request.if_range is not None and request.if_range == etag and total == str(request.offset)


def _hub_info(url: str, response: urllib3.BaseHTTPResponse, *, partial: bool = False) -> ObjectInfo:
    size = None if response.status in _REDIRECTS else _body_size(response.headers, partial)
    return hub_info(url, response.status, response.headers, size)


def _body_size(headers: Any, partial: bool) -> int | None:
    if partial:
        return _int(str(headers.get("Content-Range", "")).rpartition("/")[2])
    return _int(headers.get("Content-Length"))


def _int(value: object) -> int | None:
    text = str(value).strip() if value is not None else ""
    return int(text) if text.isdigit() else None


def _is_file_redirect(response: urllib3.BaseHTTPResponse) -> bool:
    return is_file_redirect(response.headers)


def _cdn_headers(request: Request, location: str, secret: str | None) -> dict[str, str]:
    """A job's plain headers; its secret ones and the token only on the
    Hub's own origin."""
    if same_origin(location, request.key):
        headers = dict(request.headers)
        if secret and not any(name.lower() == "authorization" for name in headers):
            headers["Authorization"] = f"Bearer {secret}"
        return headers
    return {name: value for name, value in request.headers.items() if not is_secret_header(name)}


def _discard(response: urllib3.BaseHTTPResponse) -> None:
    """Read what is left of a short answer so its connection can be reused."""
    try:
        response.drain_conn()
    except Exception:  # noqa: BLE001 - a broken connection is closed instead
        response.close()
    response.release_conn()


def _reworded(exc: errors.DlengineError, secret: str | None, location: str = "", key: str = "") -> errors.DlengineError:
    """``exc`` naming the resolve URL instead of a (signed) CDN URL, and
    never quoting the token."""
    message = str(exc)
    if location:
        message = f"{key}: CDN " + message.replace(location, location.split("?", 1)[0])
    message = redact(message, secret)
    if isinstance(exc, errors.ServerBusyError):
        return errors.ServerBusyError(message, retry_after=exc.retry_after)
    return type(exc)(message)


# ---------------------------------------------------------------- listing


def selects(path: str, prefix: str, suffix: str, include: tuple[str, ...], exclude: tuple[str, ...]) -> bool:
    """Whether a file is selected: prefix, suffix, and the globs as
    huggingface_hub's allow_patterns / ignore_patterns (fnmatch, ``*``
    crosses ``/``, a pattern ending in ``/`` is a folder)."""
    if not (path.startswith(prefix) and path.endswith(suffix)):
        return False
    return (not include or _matches(path, include)) and not _matches(path, exclude)


def _matches(path: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(path, p + "*" if p.endswith("/") else p) for p in patterns)


class HubLister:
    """A Hub repository as a backend job lists it (``registry.lister``)."""

    def __init__(self, repo_id: str, options: HubOptions) -> None:
        self.repo_id = repo_id
        self.repo_type = str(options.get("repo_type") or "model")
        self.revision = str(options.get("revision") or hflink.DEFAULT_REVISION)
        self.include = tuple(str(p) for p in options.get("include") or ())
        self.exclude = tuple(str(p) for p in options.get("exclude") or ())
        self.commit: str | None = None  # what the revision pointed to when listed
        self._api_client: HubAPI | None = None

    def list(self, prefix: str = "", suffix: str = "", start_after: str = "") -> Iterator[ObjectInfo]:
        """Selected files in name order (the Hub's order is its own), after
        ``start_after``: a restarted dispatcher goes on from its cursor."""
        for info in sorted(self.files(prefix, suffix), key=lambda i: i.key):
            if info.key > start_after:
                yield info

    def link(self, key: str) -> str:
        return hflink.make_link(self.repo_type, self.repo_id, self.revision, key)

    def describe(self) -> str:
        kind = "dataset" if self.repo_type == "dataset" else "model"
        return f"hf {kind} {self.repo_id}@{self.revision}"

    def selection(self) -> Selection:
        """What this lister selects, beside prefix and suffix (a listing's key)."""
        return {"source": self.link(""), "include": list(self.include), "exclude": list(self.exclude)}

    def resolve(self) -> str:
        """The commit the revision points to now: one request, remembered
        (the tree is then listed at that commit)."""
        if self.commit is None:
            kind = "datasets" if self.repo_type == "dataset" else "models"
            revision = quote(self.revision, safe="")
            url = f"{endpoint()}/api/{kind}/{self.repo_id}/revision/{revision}?expand=sha"
            answer = self._api(url)[0]
            sha = answer.get("sha") if isinstance(answer, dict) else None
            self.commit = str(sha) if isinstance(sha, str) and sha else self.revision
            log.info("%s is commit %s", self.describe(), self.commit)
        return self.commit

    def files(self, prefix: str = "", suffix: str = "") -> Sequence[ObjectInfo]:
        """Every selected file of the repo at the revision's commit."""
        commit = self.resolve()
        return [
            info
            for info in self._tree(commit, _folder(prefix))
            if selects(info.key, prefix, suffix, self.include, self.exclude)
        ]

    def _tree(self, commit: str, folder: str) -> Iterator[ObjectInfo]:
        """``GET /api/{type}s/{repo}/tree/{commit}[/{folder}]?recursive=true``,
        page after page (``Link`` headers), as huggingface_hub's
        ``list_repo_tree`` asks it; not through that library: importing it
        costs more than a small download."""
        kind = "datasets" if self.repo_type == "dataset" else "models"
        path = "/" + quote(folder, safe="") if folder else ""
        url: str | None = f"{endpoint()}/api/{kind}/{self.repo_id}/tree/{quote(commit, safe='')}{path}"
        url = f"{url}?recursive=true&expand=false"
        while url is not None:
            try:
                page, url = self._api(url)
            except errors.SourceNotFoundError as exc:
                if folder and "EntryNotFound" in str(exc):
                    return  # the prefix names a folder the repo does not have
                raise
            if not isinstance(page, list):
                raise errors.SourceHTTPError(f"{self.describe()}: the Hub's tree is not a list")
            for entry in page:
                info = file_info(entry)
                if info is not None:
                    yield info

    def _api(self, url: str) -> tuple[Any, str | None]:
        """One page of the Hub's API; a busy Hub (429, 5xx) is asked again
        after its Retry-After (at most ``API_TRIES`` times, as
        huggingface_hub's own backoff does)."""
        if self._api_client is None:
            from dlengine.sources.hubapi import HubAPI

            self._api_client = HubAPI()
        for attempt in range(1, API_TRIES + 1):
            try:
                body, link = self._api_client.page(url, self.describe())
                return body, _next_page(url, link, self.describe())
            except errors.ServerBusyError as exc:
                if attempt == API_TRIES:
                    raise
                wait = exc.retry_after if exc.retry_after is not None else 0.5 * 2**attempt
                log.info("%s: the Hub is busy; asking again in %.1f s", self.describe(), min(wait, MAX_API_WAIT))
                time.sleep(min(wait, MAX_API_WAIT))
        raise AssertionError("unreachable")


def _folder(prefix: str) -> str:
    """The deepest folder a prefix lies in: list only that subtree."""
    return prefix.rpartition("/")[0]


def file_info(entry: Any) -> ObjectInfo | None:
    """A file of a tree page (None for a folder): ``path``, ``oid`` (its
    blob id), ``size``, ``lfs.oid`` (its sha256)."""
    blob_id = entry.get("oid") if isinstance(entry, Mapping) and entry.get("type") == "file" else None
    if not blob_id or not isinstance(entry.get("path"), str):
        return None
    lfs = entry.get("lfs")
    digest = str(lfs.get("oid") or lfs.get("sha256") or "").lower() if isinstance(lfs, Mapping) else ""
    sha256 = digest if _SHA256.fullmatch(digest) else None
    size = entry.get("size")
    return ObjectInfo(
        key=entry["path"],
        size=size if isinstance(size, int) else None,
        etag=f'"{sha256 or blob_id}"',
        checksums={"sha256": sha256} if sha256 else {},
    )

"""A fake HuggingFace Hub on 127.0.0.1: what the real huggingface_hub client
(and dlengine) ask a Hub for, and nothing more.

- ``GET /api/{models|datasets}/{repo}[/revision/{rev}]``: ``id``, ``sha``,
  ``siblings``;
- ``GET /api/{...}/{repo}/tree/{rev}[/{path}]?recursive=&expand=&cursor=``:
  files (``oid``, ``size``, ``lfs``) and folders, ``page_size`` entries per
  page, the next page in a ``Link: <url>; rel="next"`` header; not in name
  order (the Hub's order is its own);
- ``HEAD|GET /[datasets/]{repo}/resolve/{rev}/{path}``: a small file answers
  200 with ``ETag`` (its git blob id), ``X-Repo-Commit``, ranges and
  ``If-None-Match``; an LFS file answers 302 to the "CDN" with
  ``X-Linked-Etag`` (its sha256), ``X-Linked-Size`` and ``X-Repo-Commit``;
- errors: 404 with ``X-Error-Code`` RepoNotFound / RevisionNotFound /
  EntryNotFound; 401 for a private repo without the token; injected
  statuses (429 + Retry-After) with ``fail``.

``rev`` and ``path`` arrive percent-encoded (``refs%2Fpr%2F1``). LFS bytes
live on the CDN, a ``harness.httpd.TestHTTPServer`` reached as
``http://localhost:PORT`` (another origin than ``127.0.0.1``), at
``/lfs/<sha256>``. Xet is never advertised.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from harness.httpd import QuietHandler, TestHTTPServer

TOKEN = "hf_fakeTOKENdoNotLeak0123456789"
LFS_THRESHOLD = 1000  # files at least this big are stored in LFS
_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class FakeFile:
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def pointer(self) -> bytes:
        text = f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(self.data)}\n"
        return text.encode()

    @property
    def oid(self) -> str:
        """The git blob id: of the content, or of the LFS pointer."""
        return git_blob_id(self.pointer if self.lfs else self.data)

    @property
    def etag(self) -> str:
        return f'"{self.sha256 if self.lfs else self.oid}"'


@dataclass
class FakeRepo:
    repo_type: str
    repo_id: str
    private: bool = False
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag -> commit
    commits: dict[str, dict[str, FakeFile]] = field(default_factory=dict)  # commit -> tree

    def tree(self, revision: str) -> tuple[str, dict[str, FakeFile]] | None:
        commit = self.refs.get(revision, revision)
        return (commit, self.commits[commit]) if commit in self.commits else None


@dataclass(frozen=True)
class Seen:
    """One request as the fake Hub saw it."""

    method: str
    path: str
    headers: dict[str, str]
    status: int
    body_bytes: int
    at: float  # time.monotonic() when answered

    def header(self, name: str) -> str | None:
        """A request header, whatever the case the client wrote it in."""
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


@dataclass
class _Fault:
    match: str
    status: int
    times: int
    retry_after: str | None


class FakeHub(http.server.ThreadingHTTPServer):
    """The Hub; ``cdn`` serves the LFS bytes. Thread-safe."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, cdn: TestHTTPServer, page_size: int = 4, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.cdn = cdn
        self.page_size = page_size
        self.token = TOKEN
        self._lock = threading.Lock()
        self._repos: dict[tuple[str, str], FakeRepo] = {}
        self._faults: list[_Fault] = []
        self._commits = 0
        self.seen: list[Seen] = []
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def server_bind(self) -> None:
        # no reverse DNS lookup (HTTPServer.server_bind calls getfqdn)
        http.server.socketserver.TCPServer.server_bind(self)  # type: ignore[attr-defined]
        self.server_name, self.server_port = "127.0.0.1", int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def start(self) -> FakeHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        error = sys.exc_info()[1]
        if error is not None and not isinstance(error, ConnectionError | TimeoutError):
            self.errors.append(error)

    # -- repositories

    def add_repo(
        self, repo_id: str, files: Mapping[str, bytes], *, repo_type: str = "dataset", private: bool = False
    ) -> str:
        """A repo whose ``main`` holds ``files``; returns the commit."""
        with self._lock:
            self._repos[(repo_type, repo_id)] = FakeRepo(repo_type, repo_id, private)
        return self.commit(repo_id, files, repo_type=repo_type)

    def commit(
        self,
        repo_id: str,
        files: Mapping[str, bytes] | None = None,
        *,
        delete: Iterable[str] = (),
        repo_type: str = "dataset",
        branch: str = "main",
    ) -> str:
        """A new commit on ``branch``: ``files`` added or changed, ``delete`` gone."""
        with self._lock:
            repo = self._repos[(repo_type, repo_id)]
            tree = dict(repo.commits.get(repo.refs.get(branch, ""), {}))
            tree.update({path: FakeFile(data, len(data) >= LFS_THRESHOLD) for path, data in (files or {}).items()})
            for path in delete:
                del tree[path]
            self._commits += 1
            sha = hashlib.sha1(f"{repo_id}:{self._commits}".encode(), usedforsecurity=False).hexdigest()
            repo.commits[sha] = tree
            repo.refs[branch] = sha
        for file in tree.values():
            if file.lfs:
                self.cdn.put(f"/lfs/{file.sha256}", file.data)
        return sha

    def tag(self, repo_id: str, name: str, commit: str, *, repo_type: str = "dataset") -> None:
        with self._lock:
            self._repos[(repo_type, repo_id)].refs[name] = commit

    def file(self, repo_id: str, path: str, *, repo_type: str = "dataset", revision: str = "main") -> FakeFile:
        with self._lock:
            found = self._repos[(repo_type, repo_id)].tree(revision)
        assert found is not None
        return found[1][path]

    def corrupt(self, repo_id: str, path: str, *, repo_type: str = "dataset") -> None:
        """The CDN serves other bytes (same length) for this LFS file."""
        file = self.file(repo_id, path, repo_type=repo_type)
        assert file.lfs
        self.cdn.put(f"/lfs/{file.sha256}", bytes(b ^ 0xFF for b in file.data))

    def fail(self, match: str, status: int = 429, *, times: int = 1, retry_after: str | None = None) -> None:
        """Answer ``status`` to the next ``times`` requests whose path contains ``match``."""
        with self._lock:
            self._faults.append(_Fault(match, status, times, retry_after))

    # -- what was asked

    def requests(self, contains: str = "", method: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if contains in s.path and (method is None or s.method == method)]

    @property
    def body_bytes(self) -> int:
        """Bytes of small files sent (resolve bodies)."""
        with self._lock:
            return sum(s.body_bytes for s in self.seen if "/resolve/" in s.path)

    def reset(self) -> None:
        with self._lock:
            self.seen.clear()

    # -- used by the handler

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.match in path and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def _repo(self, repo_type: str, repo_id: str) -> FakeRepo | None:
        with self._lock:
            return self._repos.get((repo_type, repo_id))


class _Handler(QuietHandler):
    server: FakeHub

    # -- routing

    def _serve(self, *, head: bool) -> None:
        self._status = 0
        self._body_bytes = 0
        raw, _, query = self.path.partition("?")
        try:
            self._route(raw, parse_qs(query), head)
        finally:
            headers = dict(self.headers.items())
            seen = Seen(self.command, self.path, headers, self._status, self._body_bytes, time.monotonic())
            self.server._record(seen)

    def _route(self, raw: str, query: dict[str, list[str]], head: bool) -> None:
        fault = self.server._take_fault(raw)
        if fault is not None:
            extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            self._error(fault.status, "", "injected fault", head, extra)
            return
        segments = raw.split("/")[1:]
        if segments[:1] == ["api"]:
            self._api(segments[1:], query, head)
        else:
            self._resolve(segments, head)

    def _repo_or_error(self, repo_type: str, repo_id: str, head: bool) -> FakeRepo | None:
        repo = self.server._repo(repo_type, repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository {repo_id} not found", head)
            return None
        if repo.private and self.headers.get("Authorization") != f"Bearer {self.server.token}":
            self._error(401, "RepoNotFound", "Invalid username or password.", head)
            return None
        return repo

    # -- /api

    def _api(self, segments: list[str], query: dict[str, list[str]], head: bool) -> None:
        if len(segments) < 3 or segments[0] not in ("models", "datasets"):
            self._error(404, "", "Not Found", head)
            return
        repo_type = segments[0][:-1]
        repo = self._repo_or_error(repo_type, "/".join(segments[1:3]), head)
        if repo is None:
            return
        rest = segments[3:]
        if rest[:1] == ["tree"] and len(rest) >= 2:
            self._tree(repo, unquote(rest[1]), unquote("/".join(rest[2:])), query, head)
        elif not rest or (rest[0] == "revision" and len(rest) == 2):
            self._info(repo, unquote(rest[1]) if rest else "main", head)
        else:
            self._error(404, "", "Not Found", head)

    def _info(self, repo: FakeRepo, revision: str, head: bool) -> None:
        found = repo.tree(revision)
        if found is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
            return
        commit, tree = found
        body = {
            "_id": commit[:24],
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "tags": [],
            "downloads": 0,
            "likes": 0,
            "lastModified": "2024-01-01T00:00:00.000Z",
            "siblings": [{"rfilename": path} for path in sorted(tree)],
        }
        self._json(body, head)

    def _tree(self, repo: FakeRepo, revision: str, folder: str, query: dict[str, list[str]], head: bool) -> None:
        found = repo.tree(revision)
        if found is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
            return
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        entries = _tree_entries(found[1], folder, recursive)
        if entries is None:
            self._error(404, "EntryNotFound", f"{folder} does not exist on {revision}", head)
            return
        start = int(query.get("cursor", ["0"])[0])
        page = entries[start : start + self.server.page_size]
        extra = {}
        if start + len(page) < len(entries):
            path = "/".join(quote(p, safe="") for p in (revision, *([folder] if folder else [])))
            base = f"{self.server.url}/api/{repo.repo_type}s/{repo.repo_id}/tree/{path}"
            extra["Link"] = f'<{base}?recursive={str(recursive).lower()}&cursor={start + len(page)}>; rel="next"'
        self._json(page, head, extra)

    # -- /resolve

    def _resolve(self, segments: list[str], head: bool) -> None:
        repo_type = "dataset" if segments[:1] == ["datasets"] else "model"
        segments = segments[1:] if repo_type == "dataset" else segments
        if len(segments) < 5 or segments[2] != "resolve":
            self._error(404, "", "Not Found", head)
            return
        repo = self._repo_or_error(repo_type, "/".join(segments[:2]), head)
        if repo is None:
            return
        revision, path = unquote(segments[3]), unquote("/".join(segments[4:]))
        found = repo.tree(revision)
        if found is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
            return
        commit, tree = found
        if path not in tree:
            self._error(404, "EntryNotFound", f"{path} does not exist on {revision}", head)
            return
        file = tree[path]
        if file.lfs:
            self._redirect(file, commit, head)
        else:
            self._small(file, commit, head)

    def _redirect(self, file: FakeFile, commit: str, head: bool) -> None:
        location = f"http://localhost:{self.server.cdn.port}/lfs/{file.sha256}?X-Amz-Signature=fake&Expires=1"
        headers = {
            "Location": location,
            "X-Linked-Etag": file.etag,
            "X-Linked-Size": str(len(file.data)),
            "X-Repo-Commit": commit,
        }
        self._send(302, headers, b"Found. Redirecting to " + location.encode(), head)

    def _small(self, file: FakeFile, commit: str, head: bool) -> None:
        data = file.data
        headers = {"ETag": file.etag, "X-Repo-Commit": commit, "Accept-Ranges": "bytes"}
        if file.etag in self.headers.get("If-None-Match", ""):
            self._send(304, headers, b"", head=True)
            return
        match = _RANGE.match(self.headers.get("Range", ""))
        if match and self.headers.get("If-Range", file.etag) == file.etag:
            start = int(match.group(1))
            if start >= len(data):
                self._send(416, {**headers, "Content-Range": f"bytes */{len(data)}"}, b"", head)
                return
            end = min(int(match.group(2)) + 1, len(data)) if match.group(2) else len(data)
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
            self._send(206, headers, data[start:end], head, counted=True)
            return
        self._send(200, headers, data, head, counted=True)

    # -- answers

    def _json(self, body: Any, head: bool, extra: dict[str, str] | None = None) -> None:
        self._send(200, {"Content-Type": "application/json", **(extra or {})}, json.dumps(body).encode(), head)

    def _error(self, status: int, code: str, message: str, head: bool, extra: dict[str, str] | None = None) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": message, **(extra or {})}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, headers, json.dumps({"error": message}).encode(), head)

    def _send(self, status: int, headers: dict[str, str], body: bytes, head: bool, *, counted: bool = False) -> None:
        self._status = status
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.lower(), value)  # as the Hub (HTTP/2) sends them
        self.send_header("Content-Length", str(len(body)) if status != 304 else "0")
        self.end_headers()
        if not head and status != 304:
            self.wfile.write(body)
            if counted:
                self._body_bytes = len(body)


def _tree_entries(tree: Mapping[str, FakeFile], folder: str, recursive: bool) -> list[dict[str, Any]] | None:
    """Entries under ``folder``: files and folders, shallow ones first (not
    in name order, like the Hub); None if the folder does not exist."""
    prefix = folder + "/" if folder else ""
    paths = [p for p in tree if p.startswith(prefix)]
    if folder and not paths:
        return None
    folders = {"/".join(p.split("/")[: i + 1]) for p in paths for i in range(p.count("/"))}
    folders = {f for f in folders if f.startswith(prefix)}
    items = [(p, "file") for p in paths] + [(f, "directory") for f in folders]
    if not recursive:
        items = [(p, kind) for p, kind in items if "/" not in p[len(prefix) :]]
    items.sort(key=lambda item: (item[0].count("/"), item[1] == "file", item[0]))
    return [_entry(path, kind, tree) for path, kind in items]


def _entry(path: str, kind: str, tree: Mapping[str, FakeFile]) -> dict[str, Any]:
    if kind == "directory":
        return {
            "type": "directory",
            "oid": hashlib.sha1(path.encode(), usedforsecurity=False).hexdigest(),
            "path": path,
        }
    file = tree[path]
    entry: dict[str, Any] = {"type": "file", "oid": file.oid, "size": len(file.data), "path": path}
    if file.lfs:
        entry["lfs"] = {"oid": file.sha256, "size": len(file.data), "pointerSize": len(file.pointer)}
    return entry


def main() -> None:
    """Serve a demo Hub until interrupted: ``python -m harness.fakehub --port 8900``."""
    import argparse
    import os

    parser = argparse.ArgumentParser(description="A fake HuggingFace Hub with demo repos (127.0.0.1 only).")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--page-size", type=int, default=4)
    args = parser.parse_args()
    with TestHTTPServer() as cdn:
        hub = FakeHub(cdn, page_size=args.page_size, port=args.port).start()
        demo = {
            "README.md": b"# demo dataset\n",
            "data/train/part-0.parquet": os.urandom(300_000),
            "data/train/part-1.parquet": os.urandom(200_000),
            "data/test/part-0.parquet": os.urandom(100_000),
            "data/meta/info.json": b'{"rows": 3}\n',
        }
        hub.add_repo("demo/dataset", demo)
        hub.add_repo("demo/private", demo, private=True)
        model = {"config.json": b"{}\n", "model.safetensors": os.urandom(250_000)}
        hub.add_repo("demo/model", model, repo_type="model")
        print(f"HF_ENDPOINT={hub.url} HF_TOKEN={hub.token}", flush=True)
        print("repos: datasets demo/dataset and demo/private (token), model demo/model", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            hub.stop()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A minimal fake HuggingFace Hub for ``bench/hf_bench.py``, in its own
process (bench/ does not import tests/; ``harness/fakehub.py`` is the one the
tests drive, with faults and private repos this one leaves out).

It answers what ``huggingface_hub`` (``snapshot_download``) and dlengine ask:

- ``GET /api/{models|datasets}/{org}/{name}[/revision/{rev}]``: ``sha`` and
  ``siblings``;
- ``GET /api/.../tree/{rev}[/{path}]?recursive=&cursor=``: files (``oid``,
  ``size``, ``lfs``) and folders, 1,000 entries a page, the next page in a
  ``Link`` header;
- ``HEAD|GET /[datasets/]{org}/{name}/resolve/{rev}/{path}``: a small file
  answers 200 (``ETag`` = git blob id, ``X-Repo-Commit``, ranges,
  ``If-None-Match`` → 304); an LFS file 302 to ``{cdn}/lfs/{sha256}``
  (``X-Linked-Etag``, ``X-Linked-Size``), which nginx serves.

The repos are a JSON state file the bench writes (``--state``); ``POST
/_bench/reload`` reads it again (a new commit), ``GET /_bench/stats`` counts
the requests by kind, ``POST /_bench/reset`` zeroes them. 127.0.0.1 only.

    python3 bench/hfhub.py --port P --cdn http://localhost:P2 --state state.json

State: ``{"repos": {"dataset:org/name": {"refs": {"main": SHA}, "commits":
{SHA: {PATH: [size, blob_id, sha256_or_null, content_file_or_null]}}}}}``.
"""

from __future__ import annotations

import argparse
import http.server
import json
import re
import threading
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

PAGE = 1000
_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")
Entry = list[Any]  # [size, blob id, sha256 or None, content file or None]


class Hub(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, cdn: str, state: Path) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.cdn = cdn.rstrip("/")
        self.state_file = state
        self.lock = threading.Lock()
        self.stats: Counter[str] = Counter()
        self.repos: dict[str, Any] = {}
        self.bodies: dict[str, bytes] = {}
        self.reload()

    def server_bind(self) -> None:  # no reverse DNS lookup
        http.server.socketserver.TCPServer.server_bind(self)  # type: ignore[attr-defined]
        self.server_name, self.server_port = "127.0.0.1", int(self.server_address[1])

    def reload(self) -> None:
        repos = json.loads(self.state_file.read_text())["repos"]
        bodies: dict[str, bytes] = {}
        for repo in repos.values():
            for tree in repo["commits"].values():
                for _size, _, sha256, content in tree.values():
                    if sha256 is None and content and content not in bodies:
                        bodies[content] = Path(content).read_bytes()
        with self.lock:
            self.repos, self.bodies = repos, bodies

    def tree(self, key: str, revision: str) -> tuple[str, dict[str, Entry]] | None:
        with self.lock:
            repo = self.repos.get(key)
        if repo is None:
            return None
        commit = repo["refs"].get(revision, revision)
        found = repo["commits"].get(commit)
        return (commit, found) if found is not None else None

    def count(self, kind: str) -> None:
        with self.lock:
            self.stats[kind] += 1


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Hub

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        if self.path == "/_bench/reload":
            self.server.reload()
        elif self.path == "/_bench/reset":
            with self.server.lock:
                self.server.stats.clear()
        self._send(200, {}, b"{}")

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        if self.path == "/_bench/stats":
            with self.server.lock:
                body = json.dumps(dict(self.server.stats)).encode()
            self._send(200, {"Content-Type": "application/json"}, body)
            return
        self._route(head=False)

    def _route(self, head: bool) -> None:
        raw, _, query = self.path.partition("?")
        segments = raw.split("/")[1:]
        if segments[:1] == ["api"] and len(segments) >= 4 and segments[1] in ("models", "datasets"):
            key = f"{segments[1][:-1]}:{segments[2]}/{segments[3]}"
            rest = segments[4:]
            if rest[:1] == ["tree"] and len(rest) >= 2:
                self.server.count("tree")
                self._tree(key, unquote(rest[1]), unquote("/".join(rest[2:])), parse_qs(query), raw)
            else:
                self.server.count("info")
                self._info(key, unquote(rest[1]) if rest[:1] == ["revision"] and len(rest) == 2 else "main")
            return
        kind = "dataset" if segments[:1] == ["datasets"] else "model"
        segments = segments[1:] if kind == "dataset" else segments
        if len(segments) < 5 or segments[2] != "resolve":
            self._error(404, "", head)
            return
        self.server.count("HEAD" if head else "GET")
        self._resolve(
            f"{kind}:{segments[0]}/{segments[1]}", unquote(segments[3]), unquote("/".join(segments[4:])), head
        )

    def _info(self, key: str, revision: str) -> None:
        found = self.server.tree(key, revision)
        if found is None:
            self._error(404, "RevisionNotFound", False)
            return
        commit, tree = found
        body = {"id": key.split(":", 1)[1], "sha": commit, "private": False, "gated": False, "disabled": False}
        body["siblings"] = [{"rfilename": path} for path in sorted(tree)]
        self._send(200, {"Content-Type": "application/json"}, json.dumps(body).encode())

    def _tree(self, key: str, revision: str, folder: str, query: dict[str, list[str]], raw: str) -> None:
        found = self.server.tree(key, revision)
        if found is None:
            self._error(404, "RevisionNotFound", False)
            return
        entries = _entries(found[1], folder)
        start = int(query.get("cursor", ["0"])[0])
        page = entries[start : start + PAGE]
        extra = {}
        if start + len(page) < len(entries):
            base = f"http://127.0.0.1:{self.server.server_port}{raw}"
            extra["Link"] = f'<{base}?recursive=true&cursor={start + len(page)}>; rel="next"'
        self._send(200, {"Content-Type": "application/json", **extra}, json.dumps(page).encode())

    def _resolve(self, key: str, revision: str, path: str, head: bool) -> None:
        found = self.server.tree(key, revision)
        if found is None or path not in found[1]:
            self._error(404, "EntryNotFound" if found else "RevisionNotFound", head)
            return
        commit, tree = found
        size, blob_id, sha256, content = tree[path]
        if sha256:
            location = f"{self.server.cdn}/lfs/{sha256}"
            headers = {"Location": location, "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(size)}
            self._send(302, {**headers, "X-Repo-Commit": commit}, b"", head)
            return
        data = self.server.bodies[content]
        headers = {"ETag": f'"{blob_id}"', "X-Repo-Commit": commit, "Accept-Ranges": "bytes"}
        if f'"{blob_id}"' in self.headers.get("If-None-Match", ""):
            self._send(304, headers, b"", True)
            return
        match = _RANGE.match(self.headers.get("Range", ""))
        if match and int(match.group(1)) < len(data):
            begin = int(match.group(1))
            end = min(int(match.group(2)) + 1, len(data)) if match.group(2) else len(data)
            headers["Content-Range"] = f"bytes {begin}-{end - 1}/{len(data)}"
            self._send(206, headers, data[begin:end], head)
            return
        self._send(200, headers, data, head)

    def _error(self, status: int, code: str, head: bool) -> None:
        headers = {"X-Error-Code": code} if code else {}
        self._send(status, {"Content-Type": "application/json", **headers}, b'{"error": "not found"}', head)

    def _send(self, status: int, headers: dict[str, str], body: bytes, head: bool = False) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.lower(), value)
        self.send_header("Content-Length", str(len(body)) if status != 304 else "0")
        self.end_headers()
        if not head and status != 304:
            self.wfile.write(body)


def _entries(tree: dict[str, Entry], folder: str) -> list[dict[str, Any]]:
    prefix = folder + "/" if folder else ""
    paths = sorted(p for p in tree if p.startswith(prefix))
    folders = sorted({"/".join(p.split("/")[: i + 1]) for p in paths for i in range(p.count("/"))} - {folder})
    out: list[dict[str, Any]] = [{"type": "directory", "oid": "0" * 40, "path": f} for f in folders]
    for path in paths:
        size, blob_id, sha256, _ = tree[path]
        entry: dict[str, Any] = {"type": "file", "oid": blob_id, "size": size, "path": path}
        if sha256:
            entry["lfs"] = {"oid": sha256, "size": size, "pointerSize": 130}
        out.append(entry)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cdn", required=True, help="base URL of the LFS bytes (another origin)")
    parser.add_argument("--state", type=Path, required=True)
    args = parser.parse_args()
    hub = Hub(args.port, args.cdn, args.state)
    print(f"fake Hub on http://127.0.0.1:{hub.server_port}", flush=True)
    hub.serve_forever(poll_interval=0.2)


if __name__ == "__main__":
    main()

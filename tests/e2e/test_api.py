"""The HTTP API (`dlengine serve`) as a user drives it: a real server process,
real HTTP (curl with the commands of AIStore's downloader docs, and requests),
objects that really land."""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from dlengine.api import openapi
from dlengine.api.listen import parse_listen, read_token, require_token_off_loopback
from dlengine.api.server import MAX_BODY_BYTES
from dlengine.errors import SpecError
from dlengine.ledger import jobs
from dlengine.ledger.states import ObjectState
from harness.httpd import Fault, TestHTTPServer
from tests.conftest import ROOT, Home, new_home, wait_for

DOWNLOAD = "/v1/download"
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


# ------------------------------------------------------------ the server


@dataclass
class Api:
    """One `dlengine serve` process and a keep-alive session to it."""

    url: str
    proc: subprocess.Popen[str]
    log: Path
    session: requests.Session = field(default_factory=requests.Session)

    def call(self, method: str, path: str = DOWNLOAD, body: object = None, **kwargs: Any) -> requests.Response:
        """One request; ``body`` goes as JSON when it is not None."""
        if body is not None:
            kwargs["data"] = json.dumps(body)
        return self.session.request(method, self.url + path, timeout=30, **kwargs)

    def ok(self, method: str, path: str = DOWNLOAD, body: object = None) -> Any:
        res = self.call(method, path, body)
        assert res.status_code == 200, (res.status_code, res.text)
        return res.json()

    def status(self, job_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self.ok("GET", body={"id": job_id})
        return data

    def wait(self, job_id: str, timeout: float = 40) -> dict[str, Any]:
        """The status once the job has ended (and its downloads stopped)."""

        def ended() -> dict[str, Any] | None:
            status = self.status(job_id)
            return status if status["state"] in ("finished", "aborted") and not status["running_cnt"] else None

        data: dict[str, Any] = wait_for(ended, timeout=timeout, interval=0.1)
        return data


def start_api(home: Home, *args: str, listen: str = "127.0.0.1:0") -> Api:
    """Start `dlengine serve` for this home on a free port (killed at teardown)."""
    log = home.path.parent / f"serve-{len(home.procs)}.log"
    home.path.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dlengine", "serve", "--listen", listen, *args],
            env=home.env, stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT, start_new_session=True,
        )  # fmt: skip
    home.procs.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = re.search(r"(http://\S+)/v1/download", line)
    assert found, f"serve did not start: {line!r}\n{log.read_text()}"
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
    api = Api(found.group(1), proc, log)
    api.session.trust_env = False  # no proxy: only 127.0.0.1 traffic
    api.session.headers["Content-Type"] = "application/json"  # bodies without it are refused
    return api


@pytest.fixture
def api(home: Home) -> Iterator[Api]:
    server = start_api(home)
    yield server
    server.session.close()


# ----------------------------------------------------- schema and ledger


_DOC = openapi()
_REGISTRY: Registry[Any] = Registry().with_resource("urn:openapi", Resource(_DOC, DRAFT202012))


def check_schema(method: str, path: str, status: int, payload: object) -> None:
    """The answer matches what the OpenAPI document promises."""
    escaped = path.replace("/", "~1")
    operation = _DOC["paths"].get(path, {}).get(method.lower(), {})
    if str(status) in operation.get("responses", {}):
        ref = f"urn:openapi#/paths/{escaped}/{method.lower()}/responses/{status}/content/application~1json/schema"
    else:
        ref = "urn:openapi#/components/schemas/Error"
    Draft202012Validator({"$ref": ref}, registry=_REGISTRY).validate(payload)


def ledger_consistent(home: Home) -> list[str]:
    """Ids of the jobs in the ledger, after checking in one snapshot that
    every counter equals its rows and no object belongs to no job."""
    conn = sqlite3.connect(home.path / "ledger.db")
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("BEGIN")
        ids = []
        for row in conn.execute("SELECT * FROM jobs ORDER BY seq").fetchall():
            counted = jobs.count_by_state(conn, row["seq"])
            for state in ObjectState:
                column = "failed_cnt" if state is ObjectState.FAILED else f"{state.value}_cnt"
                assert row[column] == counted[state.value], (row["id"], state)
            assert row["scheduled_cnt"] == sum(counted.values()), row["id"]
            ids.append(row["id"])
        orphans = conn.execute("SELECT count(*) FROM objects WHERE job NOT IN (SELECT seq FROM jobs)").fetchone()[0]
        assert orphans == 0
        return ids
    finally:
        conn.close()


# ------------------------------------------------ the docs' curl samples

# AIStore's downloader documentation (docs/downloader.md), verbatim apart
# from the host (localhost:8080 -> API) and the links (-> SRC, the test HTTP
# server). The text copy in shared/seeds lost two lines of the multi samples
# (the map's closing brace, the list's links); they are as upstream here.
SAMPLES = {
    "single": """curl -Li -H 'Content-Type: application/json' -d '{
  "type": "single",
  "bucket": {"name": "ubuntu"},
  "object_name": "ubuntu.iso",
  "link": "http://SRC/18.04.1/ubuntu-18.04.1-desktop-amd64.iso"
}' -X POST 'http://API/v1/download'""",
    "multi_map": """curl -Li -H 'Content-Type: application/json' -d '{
  "type": "multi",
  "bucket": {"name": "ubuntu"},
  "objects": {
    "train-labels.gz": "http://SRC/exdb/mnist/train-labels-idx1-ubyte.gz",
    "t10k-labels-idx1.gz": "http://SRC/exdb/mnist/t10k-labels-idx1-ubyte.gz",
    "train-images.gz": "http://SRC/exdb/mnist/train-images-idx3-ubyte.gz"
  }
}' -X POST 'http://API/v1/download'""",
    "multi_list": """curl -Li -H 'Content-Type: application/json' -d '{
  "type": "multi",
  "bucket": {"name": "ubuntu"},
  "objects": [
    "http://SRC/exdb/mnist/train-labels-idx1-ubyte.gz",
    "http://SRC/exdb/mnist/t10k-labels-idx1-ubyte.gz",
    "http://SRC/exdb/mnist/train-images-idx3-ubyte.gz"
  ]
}' -X POST 'http://API/v1/download'""",
    "range": """curl -Lig -H 'Content-Type: application/json' -d '{
  "type": "range",
  "bucket": {"name": "test"},
  "template": "SRC/some_dir/object{200..300}log.txt"
}' -X POST 'http://API/v1/download'""",
    "range_subdir": """curl -Lig -H 'Content-Type: application/json' -d '{
  "type": "range",
  "bucket": {"name": "test"},
  "template": "SRC/some_dir/object{200..300}log.txt",
  "subdir": "some/subdir/"
}' -X POST 'http://API/v1/download'""",
    "range_step": """curl -Lig -H 'Content-Type: application/json' -d '{
  "type": "range",
  "bucket": {"name": "test"},
  "template": "SRC/some_dir/object{1..1000..10}log.txt"
}' -X POST 'http://API/v1/download'""",
    "abort": """curl -Li -H 'Content-Type: application/json' -d '{"id": "5JjIuGemR"}' -X DELETE 'http://API/v1/download/abort'""",
    "status": """curl -Li -H 'Content-Type: application/json' -d '{"id": "5JjIuGemR"}' -X GET 'http://API/v1/download'""",
    "list": """curl -Li -X GET 'http://API/v1/download'""",
    "list_regex": """curl -Li -H 'Content-Type: application/json' -d '{"regex": "^[0-9]"}' -X GET 'http://API/v1/download'""",
    "remove": """curl -Li -H 'Content-Type: application/json' -d '{"id": "5JjIuGemR"}' -X DELETE 'http://API/v1/download/remove'""",
}
_MNIST = ("train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz")


def _no_proxy_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}


def run_curl(command: str) -> tuple[int, Any]:
    """Run a sample with curl; (status, JSON body) of the last answer."""
    res = subprocess.run(["bash", "-c", command], env=_no_proxy_env(), capture_output=True, timeout=30)
    assert res.returncode == 0, res.stderr
    text = res.stdout.decode()  # bytes: keep the CRLFs that end the header block
    while True:  # skip interim answers (100 Continue) and redirects curl -L followed
        head, _, text = text.partition("\r\n\r\n")
        status = int(head.split()[1])
        if status >= 200 and not (300 <= status < 400 and text.startswith("HTTP/")):
            return status, json.loads(text)


def run_requests(command: str, session: requests.Session) -> tuple[int, Any]:
    """The same sample through requests: method, headers and body taken
    from the curl command line."""
    args = shlex.split(command)[1:]
    method, headers, data = "GET", {}, None
    for flag, value in itertools.pairwise(args):
        if flag == "-X":
            method = value
        elif flag == "-H":
            name, _, text = value.partition(":")
            headers[name] = text.strip()
        elif flag == "-d":
            data = value.encode()
    res = session.request(method, args[-1], headers=headers, data=data, timeout=30, allow_redirects=True)
    return res.status_code, res.json()


Runner = Callable[..., tuple[int, Any]]


def _sample_runner(transport: str, api: Api, httpd: TestHTTPServer) -> Runner:
    api_host = api.url.removeprefix("http://")
    src_host = httpd.url.removeprefix("http://")

    def run(name: str, job_id: str = "") -> tuple[int, Any]:
        command = SAMPLES[name].replace("http://API", f"http://{api_host}").replace("SRC", src_host)
        command = command.replace("5JjIuGemR", job_id)
        status, payload = run_curl(command) if transport == "curl" else run_requests(command, api.session)
        path = shlex.split(command)[-1].removeprefix(api.url)
        method = shlex.split(command)[shlex.split(command).index("-X") + 1]
        check_schema(method, path, status, payload)
        return status, payload

    return run


def _serve_sample_sources(httpd: TestHTTPServer) -> dict[str, bytes]:
    iso = os.urandom(300_000)
    httpd.put("/18.04.1/ubuntu-18.04.1-desktop-amd64.iso", iso)
    mnist = {name: os.urandom(2000 + i) for i, name in enumerate(_MNIST)}
    for name, body in mnist.items():
        httpd.put(f"/exdb/mnist/{name}", body)
    for i in range(1, 1001):
        httpd.put(f"/some_dir/object{i}log.txt", f"log {i}\n".encode())
    return {"ubuntu.iso": iso, **mnist}


@pytest.mark.parametrize("transport", ["curl", "requests"])
def test_docs_samples_run_unchanged(home: Home, httpd: TestHTTPServer, transport: str) -> None:
    if transport == "curl" and shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    home.env["DLENGINE_THREADS"] = "16"  # ~300 small objects per run
    api = start_api(home)
    sources = _serve_sample_sources(httpd)
    run = _sample_runner(transport, api, httpd)
    ids = {}
    for name in ("single", "multi_map", "multi_list", "range", "range_subdir", "range_step"):
        status, payload = run(name)
        assert status == 200, (name, payload)
        ids[name] = payload["id"]
    status, listed = run("list")
    assert status == 200 and [j["id"] for j in listed] == list(ids.values())
    for job_id in ids.values():
        final = api.wait(job_id)
        assert (final["state"], final["error_cnt"]) == ("finished", 0), final
    _check_landed(home, sources)
    _check_status_sample(run, home, ids["range_step"])
    _check_regex_sample(run, api, httpd, ids)
    _check_abort_and_remove_samples(run, api, httpd)
    assert sorted(ledger_consistent(home)) == sorted(ids.values())


def _check_landed(home: Home, sources: dict[str, bytes]) -> None:
    ubuntu = home.ls("ais://ubuntu")  # the CLI, beside the server
    mnist_names = {"train-labels.gz", "t10k-labels-idx1.gz", "train-images.gz", *_MNIST}
    assert set(ubuntu) == {"ubuntu.iso"} | mnist_names
    iso = home.find("ais", "ubuntu", "ubuntu.iso")
    assert iso is not None and iso.read_bytes() == sources["ubuntu.iso"]
    labels = home.find("ais", "ubuntu", "train-labels.gz")
    assert labels is not None and labels.read_bytes() == sources["train-labels-idx1-ubyte.gz"]
    test = home.ls("ais://test")
    plain = {f"object{i}log.txt" for i in range(200, 301)} | {f"object{i}log.txt" for i in range(1, 1001, 10)}
    assert set(test) == plain | {f"some/subdir/object{i}log.txt" for i in range(200, 301)}
    stored = home.find("ais", "test", "some/subdir/object250log.txt")
    assert stored is not None and stored.read_bytes() == b"log 250\n"


def _check_status_sample(run: Runner, home: Home, job_id: str) -> None:
    status, payload = run("status", job_id)
    assert status == 200
    assert (payload["id"], payload["total"], payload["finished_cnt"]) == (job_id, 100, 100)
    assert payload == home.show_json(job_id)  # the same object as `dlengine show ID --json`


def _check_regex_sample(run: Runner, api: Api, httpd: TestHTTPServer, ids: dict[str, str]) -> None:
    status, listed = run("list_regex")
    assert status == 200 and listed == []  # generated descriptions start with the link
    httpd.put("/r/x", b"x")
    job = {"type": "single", "bucket": {"name": "r"}, "link": httpd.url + "/r/x", "description": "2024 run"}
    digit = api.ok("POST", body=job)
    status, listed = run("list_regex")
    assert status == 200 and [j["id"] for j in listed] == [digit["id"]]
    ids["digit"] = digit["id"]
    api.wait(digit["id"])


def _check_abort_and_remove_samples(run: Runner, api: Api, httpd: TestHTTPServer) -> None:
    httpd.put_generated("/slow/big.iso", 20_000_000)
    httpd.set_fault("/slow/big.iso", Fault(rate=200_000))
    job_id = api.ok("POST", body={"type": "single", "bucket": {"name": "slow"}, "link": httpd.url + "/slow/big.iso"})[
        "id"
    ]
    wait_for(lambda: api.status(job_id)["current_tasks"], timeout=30)
    status, payload = run("remove", job_id)
    assert status == 400 and "still running" in payload["error"]
    status, payload = run("abort", job_id)
    assert status == 200 and payload["state"] == "aborted"
    assert api.wait(job_id)["aborted"] is True
    status, payload = run("remove", job_id)
    assert (status, payload) == (200, {"id": job_id, "removed": True})
    for name in ("status", "abort", "remove"):
        status, payload = run(name, job_id)
        assert status == 404 and job_id in payload["error"], name


# ------------------------------------------------ codes, bodies, options


def _raw(api: Api, request: bytes) -> tuple[int, dict[str, str], Any]:
    """Send raw bytes on a fresh connection; (status, headers, JSON body)."""
    host, port = api.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def _length(data: bytes) -> int:
    found = re.search(rb"Content-Length: (\d+)", data)
    return int(found.group(1)) if found else 0


@pytest.fixture(scope="module")
def refusing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, Home]]:
    """One server for the requests it must refuse (each test checks that
    nothing was created, so they can share it)."""
    home = new_home(tmp_path_factory.mktemp("refusals") / "home")
    server = start_api(home)
    yield server, home
    server.session.close()
    home.stop_all()


_UNKNOWN = {"id": "dnl-nosuchjob"}
ERROR_CASES: list[tuple[str, str, object, int, str]] = [
    ("GET", DOWNLOAD, _UNKNOWN, 404, "not found"),
    ("DELETE", DOWNLOAD + "/abort", _UNKNOWN, 404, "not found"),
    ("DELETE", DOWNLOAD + "/remove", _UNKNOWN, 404, "not found"),
    ("GET", DOWNLOAD, {"id": "dnl-x", "regex": "a"}, 400, "together"),
    ("GET", DOWNLOAD, {"regex": "("}, 400, "regex"),
    ("GET", DOWNLOAD, {"uuid": "x"}, 400, "unknown field"),
    ("GET", DOWNLOAD, [1], 400, "JSON object"),
    ("GET", DOWNLOAD, {"id": 5}, 400, "string"),
    ("DELETE", DOWNLOAD + "/abort", {}, 400, "id: is required"),
    ("DELETE", DOWNLOAD + "/remove", None, 400, "id: is required"),
    ("POST", DOWNLOAD, {"type": "single", "bucket": {"name": "b"}}, 400, "link: is required"),
    ("POST", DOWNLOAD, {"type": "teleport", "bucket": {"name": "b"}}, 400, "unknown job type"),
    ("POST", DOWNLOAD, None, 400, "malformed JSON"),
    ("GET", "/v1/objects", None, 404, "no such endpoint"),
    ("GET", "/", None, 404, "no such endpoint"),
    ("PUT", DOWNLOAD, None, 405, "not allowed"),
    ("PATCH", DOWNLOAD, None, 405, "not allowed"),
    ("DELETE", DOWNLOAD, _UNKNOWN, 405, "not allowed"),
    ("GET", DOWNLOAD + "/abort", _UNKNOWN, 405, "not allowed"),
    ("BREW", DOWNLOAD, None, 405, "not allowed"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "code", "reason"), ERROR_CASES, ids=[f"{c[0]} {c[1]} {c[3]} {c[4]}" for c in ERROR_CASES]
)
def test_error_codes_and_bodies(
    refusing: tuple[Api, Home], method: str, path: str, body: object, code: int, reason: str
) -> None:
    api, home = refusing
    res = api.call(method, path, body)
    assert res.status_code == code, (method, path, body, res.text)
    assert res.headers["Content-Type"] == "application/json"
    assert reason in res.json()["error"], (method, path, body, res.text)
    check_schema(method, path, code, res.json())
    assert ledger_consistent(home) == []  # nothing was created


def test_error_body_names_the_field(refusing: tuple[Api, Home]) -> None:
    api, home = refusing
    assert api.call("PUT", DOWNLOAD).headers["Allow"] == "GET, POST"
    bad = api.call("POST", data=b'{"type": "single", "bucket": {"name": "b"}, "link": 7}')
    reason = "link: must be a string, got the number 7"  # AIStore's ErrHTTP has message and status
    assert bad.json() == {"message": reason, "error": reason, "status": 400, "field": "link"}
    assert ledger_consistent(home) == []


def test_framing_limits(refusing: tuple[Api, Home]) -> None:
    api, _ = refusing
    too_big = f"POST {DOWNLOAD} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode()
    status, headers, body = _raw(api, too_big)
    assert (status, headers["Connection"]) == (413, "close") and "larger than" in body["error"]
    expect = f"POST {DOWNLOAD} HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: {1 << 30}\r\n\r\n"
    status, _, body = _raw(api, expect.encode())  # refused before the client sends a byte of it
    assert status == 413
    for length in (b"abc", b"-1", b"\xb2", b"1, 2"):
        request = f"GET {DOWNLOAD} HTTP/1.1\r\nHost: localhost\r\nContent-Length: ".encode() + length + b"\r\n\r\n"
        status, _, body = _raw(api, request)
        assert status == 400 and "Content-Length" in body["error"], length
    chunked = b'7\r\n{"id": \r\ne\r\n"dnl-unknown"}\r\n0\r\n\r\n'
    head = f"GET {DOWNLOAD} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
    request = (head + "Content-Type: application/json\r\n\r\n").encode() + chunked
    status, _, body = _raw(api, request)
    assert status == 404 and "dnl-unknown" in body["error"]
    status, _, body = _raw(api, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n")
    assert status == 414 and body["status"] == 414


def test_only_active_tasks_and_query_parameters(api: Api, home: Home, httpd: TestHTTPServer) -> None:
    httpd.put("/q/done.bin", b"done")
    httpd.put("/q/gone.bin", b"x")
    httpd.set_fault("/q/gone.bin", Fault(status=404))
    httpd.put_generated("/q/slow.bin", 20_000_000)
    httpd.set_fault("/q/slow.bin", Fault(rate=100_000))
    links = [httpd.url + "/q/done.bin", httpd.url + "/q/gone.bin"]
    ended = api.ok("POST", body={"type": "multi", "bucket": {"name": "q"}, "objects": links})["id"]
    final = api.wait(ended)
    assert final["finished_tasks"] and final["download_errors"]
    slow = api.ok("POST", body={"type": "single", "bucket": {"name": "q"}, "link": httpd.url + "/q/slow.bin"})["id"]
    active = api.ok("GET", body={"only_active_tasks": True})
    assert [j["id"] for j in active] == [slow]
    assert [j["id"] for j in api.ok("GET", body={"only_active_tasks": False})] == [ended, slow]
    brief = api.ok("GET", body={"id": ended, "only_active_tasks": True})
    assert (brief["finished_tasks"], brief["download_errors"], brief["finished_cnt"]) == ([], [], 1)
    # the same fields as query parameters, for clients that send no GET body
    assert [j["id"] for j in api.ok("GET", DOWNLOAD + "?only_active_tasks=true")] == [slow]
    assert api.ok("GET", f"{DOWNLOAD}?id={ended}")["id"] == ended
    assert api.call("GET", f"{DOWNLOAD}?id={ended}", {"id": ended}).status_code == 400
    assert api.ok("DELETE", f"{DOWNLOAD}/abort?id={slow}")["state"] == "aborted"
    # AIStore's Go client sends every field of its admin body, empty ones too
    go_body = {"id": "", "regex": "", "only_active_tasks": False}
    assert len(api.ok("GET", body=go_body)) == 2
    assert api.ok("GET", body={**go_body, "id": ended})["id"] == ended
    api.wait(slow)
    assert api.ok("DELETE", f"{DOWNLOAD}/remove", {**go_body, "id": slow}) == {"id": slow, "removed": True}


def test_concurrent_clients_and_cli_beside_the_server(api: Api, home: Home, httpd: TestHTTPServer) -> None:
    for i in range(3):
        httpd.put(f"/c/{i}.bin", os.urandom(1000 + i))
    links = [f"{httpd.url}/c/{i}.bin" for i in range(3)]
    deadline = time.monotonic() + 5
    submitted: list[str] = []
    failures: list[str] = []

    def client(number: int) -> None:
        with requests.Session() as session:
            session.trust_env = False
            session.headers["Content-Type"] = "application/json"
            try:
                _submit_and_poll(session, api.url, number, links, deadline, submitted)
            except Exception as exc:
                failures.append(f"client {number}: {exc!r}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    # the CLI beside the server: its submit starts no second supervisor
    cli = home.cli("submit", "-", input=json.dumps({"type": "multi", "bucket": {"name": "cli"}, "objects": links}))
    assert cli.returncode == 0, cli.stderr
    cli_id = cli.stdout.split()[-1]
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures[:5]
    assert len(submitted) >= 20
    for job_id in [*submitted, cli_id]:
        final = api.wait(job_id)
        assert (final["state"], final["finished_cnt"]) == ("finished", 3), final
    assert set(home.ls("ais://cli")) == {"0.bin", "1.bin", "2.bin"}
    assert sorted(ledger_consistent(home)) == sorted([*submitted, cli_id])
    run = home.run()  # the server's supervisor holds the home: nothing for `run` to do
    assert run.returncode == 0 and "already running" in run.stderr


def _submit_and_poll(
    session: requests.Session, url: str, number: int, links: list[str], deadline: float, submitted: list[str]
) -> None:
    while time.monotonic() < deadline:
        job = {"type": "multi", "bucket": {"name": f"c{number}"}, "objects": links, "description": f"client {number}"}
        res = session.post(url + DOWNLOAD, data=json.dumps(job), timeout=30)
        assert res.status_code == 200, res.text
        job_id = res.json()["id"]
        submitted.append(job_id)
        while time.monotonic() < deadline:
            status = session.get(url + DOWNLOAD, data=json.dumps({"id": job_id}), timeout=30)
            assert status.status_code == 200, status.text
            if status.json()["state"] == "finished":
                break
            time.sleep(0.05)
        listed = session.get(url + DOWNLOAD, data=json.dumps({"regex": f"^client {number}$"}), timeout=30)
        assert listed.status_code == 200 and job_id in {j["id"] for j in listed.json()}, listed.text


# ----------------------------------------------------------- security


def test_non_loopback_needs_a_token(home: Home) -> None:
    res = home.cli("serve", "--listen", "0.0.0.0:0", timeout=30)
    assert res.returncode == 2, res.stderr
    assert "not a loopback address" in res.stderr and "--token-file" in res.stderr
    with pytest.raises(SpecError, match="--token-file"):
        require_token_off_loopback(parse_listen(":0"), None)
    require_token_off_loopback(parse_listen(":0"), "a-token")


def test_token_enforced_and_never_logged(home: Home, tmp_path: Path) -> None:
    token = "s3cr3t-" + os.urandom(12).hex()
    token_file = tmp_path / "api.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    api = start_api(home, "--token-file", str(token_file))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
        res = api.session.get(api.url + DOWNLOAD, headers=headers, timeout=10)
        assert res.status_code == 401 and res.headers["WWW-Authenticate"] == "Bearer"
        assert "bearer token" in res.json()["error"]
    res = api.session.post(api.url + DOWNLOAD, data=b"{}", timeout=10)
    assert res.status_code == 401  # refused before the body is even looked at
    api.session.headers["Authorization"] = f"Bearer {token}"
    assert api.ok("GET") == []
    assert api.call("POST", body={"type": "single"}).status_code == 400
    # a second server on the same home is refused; the first stays up
    second = home.cli("serve", "--listen", "127.0.0.1:0", timeout=30)
    assert second.returncode == 3 and "already running" in second.stderr
    api.proc.terminate()  # SIGTERM: a clean stop
    assert api.proc.wait(timeout=30) == 0
    assert token not in api.log.read_text()
    assert "GET /v1/download" in api.log.read_text()  # the access log is there, without it


def test_token_file_problems(home: Home, tmp_path: Path) -> None:
    empty = tmp_path / "empty.token"
    empty.write_text("\n")
    spaced = tmp_path / "spaced.token"
    spaced.write_text("two words\n")
    for path, reason in ((empty, "is empty"), (spaced, "no spaces"), (tmp_path / "missing", "cannot read")):
        with pytest.raises(SpecError, match=reason):
            read_token(str(path))
    res = home.cli("serve", "--token-file", str(empty), timeout=30)
    assert res.returncode == 2 and "--token-file" in res.stderr and "is empty" in res.stderr, res.stderr

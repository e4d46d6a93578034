"""What a server sends is checked (issue 12), against real misbehaving
servers on 127.0.0.1 and a real ``dlengine run``.

One run downloads a job whose objects each meet one misbehaviour: redirect
chains (followed, at most 10, http/https only), redirects to the metadata
address in three spellings and to another origin (no credentials follow),
a 206 that ignores If-Range, 204, a 304 to an unconditional request, a
declared size above the maximum, an endless body, a body longer than
declared, a certificate that fails verification, a refused connection and
a signed link whose secrets must stay out of the ledger, status and logs.
A second run, with a 5 s timeout, meets a trickle of 1 byte every 2 s
and an endless body without a length.
Each test then checks one object from the ledger and the servers' records.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.httpd import Fault, RequestRecord, TestHTTPServer
from tests.conftest import Home, counters_match_rows, new_home, self_signed_cert, wait_for

ATTEMPTS = 4
MAX_SIZE = 4 << 20  # DLENGINE_MAX_OBJECT_SIZE of the run
SIZE = 300_007
CUT = 100_003
AUTH = "Bearer s3cr3t-bearer"
API_KEY = "k3y-value"
SIGNATURE = "SIGSECRET0123"
TOKEN = "TOKSECRET4567"
TRICKLE = 1000  # bytes, one every 2 s: 2000 s if never cut


@dataclass
class Run:
    home: Home
    a: TestHTTPServer  # the job's origin
    b: TestHTTPServer  # another origin
    code: int
    stderr: str
    status: dict[str, Any]
    bodies: dict[str, bytes]
    tls_handshakes: int

    def errors(self) -> dict[str, dict[str, Any]]:
        return {e["name"]: e for e in self.status["download_errors"]}

    def gets(self, server: TestHTTPServer, path: str) -> list[RequestRecord]:
        return [r for r in server.requests if r.path == path and r.method == "GET"]

    def stored(self, name: str) -> bytes | None:
        path = self.home.find("ais", "chk", name)
        return None if path is None else path.read_bytes()


def _redirect(server: TestHTTPServer, path: str, location: str, status: int = 302) -> None:
    server.set_fault(path, Fault(status=status, location=location))


def _chain(server: TestHTTPServer, name: str, hops: int) -> str:
    """``hops`` redirects from ``/r/<name>0`` to the object ``/d/<name>``."""
    for i in range(hops):
        target = f"/r/{name}{i + 1}" if i + 1 < hops else f"/d/{name}"
        _redirect(server, f"/r/{name}{i}", target, (301, 302, 303, 307, 308)[i % 5])
    return f"/r/{name}0"


def _objects(a: TestHTTPServer, b: TestHTTPServer, tls_port: int, closed_port: int) -> dict[str, str]:
    bodies = {name: os.urandom(SIZE) for name in ("chain", "ten", "eleven", "cross", "same", "pastlength")}
    for name, body in bodies.items():
        a.put(f"/d/{name}", body)
    b.put("/d/cross", bodies["cross"])
    links = {name: f"{a.url}{_chain(a, name, hops)}" for name, hops in (("chain", 5), ("ten", 10), ("eleven", 11))}
    for name, location in {
        "ftp": "ftp://127.0.0.1/x",
        "metadata": "http://169.254.169.254:9/latest/meta-data/",
        "mapped": "http://[::ffff:169.254.169.254]:9/latest/meta-data/",
        "nat64": "http://[64:ff9b::a9fe:a9fe]:9/latest/meta-data/",
        "cross": f"{b.url}/d/cross",
        "same": "/d/same",
    }.items():
        _redirect(a, f"/r/{name}", location)
        links[name] = f"{a.url}/r/{name}"
    for name, fault in {"nocontent": Fault(status=204), "notmod": Fault(status=304)}.items():
        a.set_fault(f"/d/{name}", fault)
        links[name] = f"{a.url}/d/{name}"
    a.put_generated("/d/toolarge", 2 * MAX_SIZE, seed=3)
    a.set_fault("/d/pastlength", Fault(extra_bytes=5000))
    a.put("/d/ifrange", os.urandom(SIZE), etag="v1-not-an-md5")
    a.set_fault("/d/ifrange", Fault(reset_after=CUT, rate=100_000, times=1))  # 1 s to change it
    links |= {name: f"{a.url}/d/{name}" for name in ("toolarge", "pastlength", "ifrange")}
    links["tls"] = f"https://127.0.0.1:{tls_port}/d/tls"
    links["refused"] = f"http://127.0.0.1:{closed_port}/d/refused"
    links["signed"] = f"{a.url}/d/missing?X-Amz-Credential=AKIA&X-Amz-Signature={SIGNATURE}&token={TOKEN}"
    return links


def _change_ifrange(a: TestHTTPServer) -> bytes:
    """While the first attempt is being sent (and then reset), the object
    changes and the server starts ignoring If-Range."""
    wait_for(lambda: a.bytes_sent_for("/d/ifrange") > 0)
    new = os.urandom(SIZE)
    a.put("/d/ifrange", new, etag="v2-not-an-md5")
    a.set_fault("/d/ifrange", Fault(ignore_if_range=True))
    return new


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("checks")
    with TestHTTPServer() as a, TestHTTPServer() as b, _TLSListener(tmp) as tls:
        home = new_home(tmp / "home")
        # chunk below SIZE: objects of at most one chunk are received in
        # memory (nothing to resume), and /d/ifrange must resume
        home.env.update(
            DLENGINE_ATTEMPTS=str(ATTEMPTS), DLENGINE_MAX_OBJECT_SIZE=str(MAX_SIZE), DLENGINE_THREADS="12",
            DLENGINE_CHUNK="65536",
        )  # fmt: skip
        links = _objects(a, b, tls.port, _closed_port())
        headers = {"Authorization": AUTH, "X-Api-Key": API_KEY, "X-Trace": "plain"}
        job = home.submit({"type": "multi", "bucket": {"name": "chk"}, "objects": links, "headers": headers})
        proc = home.spawn("run")
        new_ifrange = _change_ifrange(a)
        try:
            _, stderr = proc.communicate(timeout=150)
            bodies = {n: a.expected_bytes(f"/d/{n}") for n in ("chain", "ten", "cross", "same", "pastlength")}
            bodies["ifrange"] = new_ifrange
            yield Run(home, a, b, proc.returncode, stderr, home.status(job), bodies, tls.handshakes)
        finally:
            home.stop_all()


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """Sources that never end unless dlengine ends them, in a run of their
    own (where they are not cut, this run times out and not the other)."""
    with TestHTTPServer() as a:
        home = new_home(tmp_path_factory.mktemp("slow") / "home")
        home.env.update(DLENGINE_ATTEMPTS="2", DLENGINE_MAX_OBJECT_SIZE=str(MAX_SIZE))
        a.put("/d/trickle", os.urandom(TRICKLE))
        a.set_fault("/d/trickle", Fault(drip=2.0, times=1))
        a.put("/d/endless", os.urandom(64 << 10))
        a.set_fault("/d/endless", Fault(endless=True))
        job = {"type": "multi", "bucket": {"name": "chk"}, "timeout": "5s"}
        job_id = home.submit(job | {"objects": {n: f"{a.url}/d/{n}" for n in ("trickle", "endless")}})
        try:
            res = home.run(timeout=120)
            bodies = {"trickle": a.expected_bytes("/d/trickle")}
            yield Run(home, a, a, res.returncode, res.stderr, home.status(job_id), bodies, 0)
        finally:
            home.stop_all()


GOOD = ("chain", "ten", "cross", "same", "pastlength", "ifrange")
BAD = {
    "eleven": "redirect",
    "ftp": "redirect",
    "metadata": "policy",
    "mapped": "policy",
    "nat64": "policy",
    "nocontent": "http",
    "notmod": "http",
    "toolarge": "size",
    "tls": "tls",
    "refused": "refused",
    "signed": "not-found",
}


def test_every_object_ends_as_it_should(run: Run) -> None:
    assert run.code == 1, run.stderr
    assert {name: e["code"] for name, e in run.errors().items()} == BAD
    assert (run.status["finished_cnt"], run.status["error_cnt"]) == (len(GOOD), len(BAD))
    for name in GOOD:
        assert run.stored(name) == run.bodies[name], name
    assert run.home.work_files() == []
    with run.home.ledger() as conn:
        counters_match_rows(conn, run.status["id"])


def test_redirect_chains_are_followed_up_to_ten(run: Run) -> None:
    assert [len(run.gets(run.a, f"/r/ten{i}")) for i in range(10)] == [1] * 10
    assert len(run.gets(run.a, "/d/ten")) == 1
    eleven = run.errors()["eleven"]["error"]
    assert "more than 10 redirects" in eleven, eleven
    assert [len(run.gets(run.a, f"/r/eleven{i}")) for i in range(11)] == [1] * 11  # not retried
    assert run.gets(run.a, "/d/eleven") == []


def test_only_http_and_https_are_followed(run: Run) -> None:
    error = run.errors()["ftp"]["error"]
    assert "ftp" in error and "refused" in error, error


@pytest.mark.parametrize("name", ["metadata", "mapped", "nat64"])
def test_a_redirect_to_the_metadata_service_is_refused(run: Run, name: str) -> None:
    error = run.errors()[name]["error"]
    assert "refusing to connect" in error and "link-local" in error, error
    assert len(run.gets(run.a, f"/r/{name}")) == 1  # permanent: not retried


def test_credentials_stay_on_the_jobs_origin(run: Run) -> None:
    (first,) = run.gets(run.a, "/r/cross")
    assert first.headers.get("Authorization") == AUTH and first.headers.get("X-Api-Key") == API_KEY
    (hop,) = run.gets(run.b, "/d/cross")
    lowered = {k.lower(): v for k, v in hop.headers.items()}
    assert "authorization" not in lowered and "x-api-key" not in lowered and "cookie" not in lowered
    assert lowered.get("x-trace") == "plain"  # plain headers go on
    (same,) = run.gets(run.a, "/d/same")
    assert same.headers.get("Authorization") == AUTH  # a redirect on the same origin keeps them


def test_a_206_without_the_validator_asked_for_starts_over(run: Run) -> None:
    first, second, third = run.gets(run.a, "/d/ifrange")
    assert "Range" not in first.headers
    assert second.headers.get("If-Range") == '"v1-not-an-md5"' and second.status == 206  # ignored If-Range
    assert "Range" not in third.headers and third.status == 200
    assert run.stored("ifrange") == run.bodies["ifrange"]  # never two versions glued together


@pytest.mark.parametrize(("name", "words"), [("nocontent", "HTTP 204"), ("notmod", "HTTP 304")])
def test_no_object_is_an_error_naming_the_status(run: Run, name: str, words: str) -> None:
    error = run.errors()[name]["error"]
    assert words in error and "internal error" not in error, error
    assert run.stored(name) is None


def test_a_declared_size_above_the_maximum_fails_before_the_body(run: Run) -> None:
    error = run.errors()["toolarge"]["error"]
    assert f"declares {2 * MAX_SIZE} bytes" in error and str(MAX_SIZE) in error, error
    assert len(run.gets(run.a, "/d/toolarge")) == 1
    assert run.a.bytes_sent_for("/d/toolarge") < 2 * MAX_SIZE


def test_an_endless_body_is_cut_at_the_maximum_size(slow: Run) -> None:
    error = slow.errors()["endless"]
    assert error["code"] == "size" and "maximum object size" in error["error"], error
    assert len(slow.gets(slow.a, "/d/endless")) == 1  # permanent: not retried
    assert slow.home.work_files() == []


def test_a_body_longer_than_declared_is_cut_at_its_length(run: Run) -> None:
    assert run.stored("pastlength") == run.bodies["pastlength"]


def test_a_certificate_that_fails_verification_is_not_retried(run: Run) -> None:
    error = run.errors()["tls"]["error"]
    assert "certificate verification failed" in error, error
    assert run.tls_handshakes == 1


def test_a_refused_connection_says_so(run: Run) -> None:
    error = run.errors()["refused"]["error"]
    assert "connection refused" in error and "HTTPConnection object" not in error, error
    # nothing listens there: failed at once, not retried (as wget and curl)
    with run.home.ledger() as conn:
        attempts, code = conn.execute("SELECT attempts, error_code FROM objects WHERE name = 'refused'").fetchone()
    assert (attempts, code) == (1, "refused")


def test_signed_links_secrets_stay_out_of_ledger_status_and_logs(run: Run) -> None:
    with run.home.ledger() as conn:
        texts = [str(row) for row in conn.execute("SELECT error, error_code FROM objects WHERE error IS NOT NULL")]
        texts += [str(row) for row in conn.execute("SELECT error, description FROM jobs")]
    shown = "".join(run.home.cli("show", run.status["id"], flag).stdout for flag in ("-v", "--json"))
    for text in (*texts, shown, run.stderr):
        assert SIGNATURE not in text and TOKEN not in text and "s3cr3t" not in text
    error = run.errors()["signed"]
    assert "X-Amz-Signature=***" in error["error"] and "token=***" in error["link"], error


def test_a_trickle_is_a_stall(slow: Run) -> None:
    assert slow.status["finished_cnt"] == 1, slow.status
    # the server sees the cut connection at its next drip (every 2 s)
    wait_for(lambda: slow.gets(slow.a, "/d/trickle")[0].end is not None, timeout=10)
    first = slow.gets(slow.a, "/d/trickle")[0]
    assert first.end is not None and 4 < first.end - first.start < 30  # cut, not 2000 s of drips
    assert slow.stored("trickle") == slow.bodies["trickle"]


# -- helpers -------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _TLSListener:
    """HTTPS on 127.0.0.1 with a self-signed certificate nobody trusts:
    counts the handshakes clients attempt."""

    def __init__(self, tmp: Path) -> None:
        cert, key = self_signed_cert(tmp)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert, key)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self.handshakes = 0

    def __enter__(self) -> _TLSListener:
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.handshakes += 1
            conn.settimeout(5)
            try:
                with self._context.wrap_socket(conn, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                conn.close()


@pytest.mark.parametrize(
    "link",
    [
        "http://169.254.169.254\\@127.0.0.1/latest/meta-data/iam",  # 127.0.0.1 to urllib.parse, not to urllib3
        "http://127.0.0.1\\.example/x",
        "http://user:hunter2@127.0.0.1/x",
        "https://ghp_abcdef@127.0.0.1/x",
    ],
)
def test_links_parsers_disagree_on_or_with_credentials_are_refused(home: Home, link: str) -> None:
    res = home.cli(
        "submit",
        "-",
        "--no-start",
        input=f'{{"type": "single", "bucket": {{"name": "x"}}, "link": "{link}"}}'.replace("\\", "\\\\"),
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert ("host part" if "\\" in link else "user:password@") in res.stderr, res.stderr
    assert "hunter2" not in res.stderr and "ghp_abcdef" not in res.stderr
    assert home.cli("show", "--json").stdout.strip() in ("[]", "")

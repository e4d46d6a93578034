"""The test HTTP server behaves like a real origin, faults included."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import urllib3

from harness.httpd import BLOCK_SIZE, Fault, TestHTTPServer
from tests import conftest_httpd

httpd = conftest_httpd.httpd

DATA = bytes(range(256)) * 40  # 10240 bytes
SIZE = len(DATA)
T0 = 1_700_000_000.0  # a fixed Last-Modified


@pytest.fixture
def http() -> Iterator[urllib3.PoolManager]:
    with urllib3.PoolManager(retries=False, timeout=5.0) as pool:
        yield pool


@pytest.fixture
def data_url(httpd: TestHTTPServer) -> str:
    httpd.put("/abc/shard-001.tar", DATA, last_modified=T0)
    return httpd.url + "/abc/shard-001.tar"


def get(http: urllib3.PoolManager, url: str, method: str = "GET", **headers: str) -> urllib3.BaseHTTPResponse:
    fields = {name.replace("_", "-"): value for name, value in headers.items()}
    return http.request(method, url, headers=fields)


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    error: OSError | None


def raw_get(server: TestHTTPServer, path: str, timeout: float = 5.0) -> RawResponse:
    """GET on a bare socket: every byte received, and how the stream ended."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode())
        received, error = bytearray(), None
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except OSError as exc:
            error = exc
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return RawResponse(int(status_line.split()[1]), headers, body, error)


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


# -- plain GET and HEAD


def test_full_get(httpd: TestHTTPServer, http: urllib3.PoolManager, data_url: str) -> None:
    response = get(http, data_url)
    assert response.status == 200
    assert response.data == DATA
    assert response.headers["Content-Length"] == str(SIZE)
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["ETag"] == f'"{hashlib.md5(DATA).hexdigest()}"'
    assert response.headers["Last-Modified"] == email.utils.formatdate(T0, usegmt=True)
    assert "Content-MD5" not in response.headers
    assert httpd.bytes_sent == SIZE == httpd.bytes_sent_for("/abc/shard-001.tar")


def test_head_sends_headers_only(httpd: TestHTTPServer, http: urllib3.PoolManager, data_url: str) -> None:
    response = get(http, data_url, "HEAD")
    assert response.status == 200
    assert response.headers["Content-Length"] == str(SIZE)
    assert response.data == b""
    assert httpd.bytes_sent == 0
    assert httpd.request_count(method="HEAD") == 1


def test_head_mirrors_ranged_get(httpd: TestHTTPServer, http: urllib3.PoolManager, data_url: str) -> None:
    response = get(http, data_url, "HEAD", Range="bytes=10-19")
    assert response.status == 206
    assert response.headers["Content-Range"] == f"bytes 10-19/{SIZE}"
    assert response.headers["Content-Length"] == "10"
    assert httpd.bytes_sent == 0


def test_unknown_and_deleted_paths_are_404(httpd: TestHTTPServer, http: urllib3.PoolManager, data_url: str) -> None:
    assert get(http, httpd.url + "/nope").status == 404
    assert httpd.delete("/abc/shard-001.tar")
    assert not httpd.delete("/abc/shard-001.tar")
    assert get(http, data_url).status == 404
    assert httpd.bytes_sent == 0
    with pytest.raises(KeyError):
        httpd.expected_bytes("/abc/shard-001.tar")


def test_percent_encoded_path(httpd: TestHTTPServer, http: urllib3.PoolManager) -> None:
    httpd.put("/a b/c+d.bin", b"x")
    assert get(http, httpd.url + "/a%20b/c+d.bin?x=1").data == b"x"
    assert httpd.requests[-1].path == "/a b/c+d.bin"


# -- ranges


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=100-", 100, SIZE),
        ("bytes=100-199", 100, 200),
        ("bytes=0-0", 0, 1),
        ("bytes=-300", SIZE - 300, SIZE),
        ("bytes=-999999", 0, SIZE),
        ("bytes=10000-999999", 10000, SIZE),
    ],
)
def test_range_forms(
    httpd: TestHTTPServer,
    http: urllib3.PoolManager,
    data_url: str,
    header: str,
    start: int,
    end: int,
) -> None:
    response = get(http, data_url, Range=header)
    assert response.status == 206
    assert response.headers["Content-Range"] == f"bytes {start}-{end - 1}/{SIZE}"
    assert response.headers["Content-Length"] == str(end - start)
    assert response.data == DATA[start:end]
    assert httpd.bytes_sent == end - start


@pytest.mark.parametrize("header", [f"bytes={SIZE}-", f"bytes={SIZE + 5}-{SIZE + 9}", "bytes=-0"])
def test_unsatisfiable_range_is_416(
    httpd: TestHTTPServer, http: urllib3.PoolManager, data_url: str, header: str
) -> None:
    response = get(http, data_url, Range=header)
    assert response.status == 416
    assert response.headers["Content-Range"] == f"bytes */{SIZE}"
    assert response.data == b""


def test_any_range_of_empty_object_is_416(httpd: TestHTTPServer, http: urllib3.PoolManager) -> None:
    httpd.put("/empty", b"")
    assert get(http, httpd.url + "/empty").data == b""
    assert get(http, httpd.url + "/empty", Range="bytes=0-").status == 416
    assert get(http, httpd.url + "/empty", Range="bytes=-5").status == 416


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "bytes=9-3", "items=0-1", "bytes=-"])
def test_multi_or_malformed_range_gets_whole_body(http: urllib3.PoolManager, data_url: str, header: str) -> None:
    response = get(http, data_url, Range=header)
    assert (response.status, response.data) == (200, DATA)


def test_if_range_etag(httpd: TestHTTPServer, http: urllib3.PoolManager, data_url: str) -> None:
    etag = httpd.etag("/abc/shard-001.tar")
    assert get(http, data_url, Range="bytes=10-", If_Range=etag).status == 206
    response = get(http, data_url, Range="bytes=10-", If_Range='"stale"')
    assert (response.status, response.data) == (200, DATA)
    assert get(http, data_url, Range="bytes=10-", If_Range="W/" + etag).status == 200


def test_if_range_date(http: urllib3.PoolManager, data_url: str) -> None:
    same = email.utils.formatdate(T0, usegmt=True)
    other = email.utils.formatdate(T0 - 60, usegmt=True)
    assert get(http, data_url, Range="bytes=10-", If_Range=same).status == 206
    assert get(http, data_url, Range="bytes=10-", If_Range=other).status == 200


# -- conditional requests and validators


def test_not_modified(httpd: TestHTTPServer, http: urllib3.PoolManager, data_url: str) -> None:
    etag = httpd.etag("/abc/shard-001.tar")
    for headers in (
        {"If_None_Match": etag},
        {"If_None_Match": f'"other", W/{etag}'},
        {"If_None_Match": "*"},
        {"If_Modified_Since": email.utils.formatdate(T0, usegmt=True)},
    ):
        response = get(http, data_url, **headers)
        assert (response.status, response.data) == (304, b"")
        assert response.headers["ETag"] == etag
    later = email.utils.formatdate(T0 - 1, usegmt=True)
    assert get(http, data_url, If_Modified_Since=later).status == 200
    assert get(http, data_url, If_None_Match='"other"').status == 200
    assert httpd.bytes_sent == 2 * SIZE


def test_precondition_failed(httpd: TestHTTPServer, http: urllib3.PoolManager, data_url: str) -> None:
    etag = httpd.etag("/abc/shard-001.tar")
    assert get(http, data_url, If_Match='"other"').status == 412
    assert get(http, data_url, If_Match=etag).status == 200
    before = email.utils.formatdate(T0 - 1, usegmt=True)
    assert get(http, data_url, If_Unmodified_Since=before).status == 412


def test_put_changes_validators(httpd: TestHTTPServer, http: urllib3.PoolManager) -> None:
    url = httpd.url + "/obj"
    httpd.put("/obj", b"one", last_modified=T0)
    first = get(http, url).headers
    httpd.put("/obj", b"two", last_modified=T0 + 10)
    second = get(http, url).headers
    assert first["ETag"] != second["ETag"]
    assert first["Last-Modified"] != second["Last-Modified"]
    httpd.put("/obj", b"two", etag="custom")
    assert get(http, url).headers["ETag"] == '"custom"'
    httpd.put_generated("/gen", 100, seed=1)
    etag = httpd.etag("/gen")
    httpd.put_generated("/gen", 100, seed=1)
    assert httpd.etag("/gen") != etag


def test_content_md5(httpd: TestHTTPServer, http: urllib3.PoolManager) -> None:
    httpd.put("/md5", DATA, content_md5=True)
    assert get(http, httpd.url + "/md5").headers["Content-MD5"] == md5_b64(DATA)
    assert get(http, httpd.url + "/md5", "HEAD").headers["Content-MD5"] == md5_b64(DATA)
    ranged = get(http, httpd.url + "/md5", Range="bytes=0-9")
    assert "Content-MD5" not in ranged.headers
    with TestHTTPServer(content_md5=True) as server:
        server.put_generated("/g", 3 * BLOCK_SIZE // 2, seed=3)
        response = get(http, server.url + "/g")
        assert response.headers["Content-MD5"] == md5_b64(response.data)


# -- faults


def test_status_fault_with_times(httpd: TestHTTPServer, http: urllib3.PoolManager, data_url: str) -> None:
    httpd.set_fault("/abc/shard-001.tar", Fault(status=503, retry_after="2", times=2))
    statuses = []
    for _ in range(3):
        response = get(http, data_url)
        statuses.append(response.status)
        if response.status == 503:
            assert response.headers["Retry-After"] == "2"
    assert statuses == [503, 503, 200]
    assert httpd.request_count("/abc/shard-001.tar") == 3
    assert httpd.bytes_sent == SIZE  # error bodies are not content


def test_status_fault_forever_default_and_methods(
    httpd: TestHTTPServer, http: urllib3.PoolManager, data_url: str
) -> None:
    httpd.set_default_fault(Fault(status=429, retry_after=1))
    httpd.set_fault("/other", Fault(status=403, methods=frozenset({"GET"})))
    for _ in range(3):
        assert get(http, data_url).status == 429
    assert get(http, httpd.url + "/other").status == 403
    assert get(http, httpd.url + "/other", "HEAD").status == 429
    httpd.clear_faults()
    assert get(http, data_url).status == 200


def test_reset_after_truncates_and_counts(httpd: TestHTTPServer, data_url: str) -> None:
    httpd.set_fault("/abc/shard-001.tar", Fault(reset_after=1000, times=1))
    response = raw_get(httpd, "/abc/shard-001.tar")
    assert response.status == 200
    assert response.headers["Content-Length"] == str(SIZE)
    assert response.body == DATA[:1000]
    assert isinstance(response.error, ConnectionResetError)
    assert httpd.bytes_sent == 1000
    assert httpd.requests[-1].bytes_sent == 1000
    assert raw_get(httpd, "/abc/shard-001.tar").body == DATA  # times=1


def test_reset_after_counts_from_range_start(httpd: TestHTTPServer, http: urllib3.PoolManager, data_url: str) -> None:
    httpd.set_fault("/abc/shard-001.tar", Fault(reset_after=100))
    response = http.request("GET", data_url, headers={"Range": "bytes=5000-"}, preload_content=False)
    assert response.status == 206
    with pytest.raises(urllib3.exceptions.ProtocolError):
        response.read()
    assert httpd.bytes_sent == 100


def test_reset_with_requests_raises(httpd: TestHTTPServer, data_url: str) -> None:
    httpd.set_fault("/abc/shard-001.tar", Fault(reset_after=0))
    # requests wraps a reset mid-body as ChunkedEncodingError, even without chunks
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(data_url, timeout=5)
    assert httpd.bytes_sent == 0


def test_stall_then_continue(httpd: TestHTTPServer, http: urllib3.PoolManager, data_url: str) -> None:
    httpd.set_fault("/abc/shard-001.tar", Fault(stall_after=1000, stall_seconds=0.3))
    response = http.request("GET", data_url, preload_content=False)
    began = time.monotonic()
    first = response.read(1000)
    assert time.monotonic() - began < 0.2
    rest = response.read()
    assert time.monotonic() - began >= 0.25
    assert first + rest == DATA
    assert httpd.bytes_sent == SIZE


def test_stall_times_out_a_client(httpd: TestHTTPServer, http: urllib3.PoolManager, data_url: str) -> None:
    httpd.set_fault("/abc/shard-001.tar", Fault(stall_after=10, stall_seconds=1.0))
    response = http.request("GET", data_url, preload_content=False, timeout=0.2)
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        response.read()
    response.release_conn()


def test_stall_then_close(httpd: TestHTTPServer, data_url: str) -> None:
    httpd.set_fault("/abc/shard-001.tar", Fault(stall_after=500, stall_seconds=0.05, stall_close=True))
    response = raw_get(httpd, "/abc/shard-001.tar")
    assert response.body == DATA[:500]
    assert response.error is None  # a clean FIN, unlike reset_after
    assert httpd.bytes_sent == 500


def test_wrong_md5(httpd: TestHTTPServer, http: urllib3.PoolManager, data_url: str) -> None:
    httpd.set_fault("/abc/shard-001.tar", Fault(wrong_md5=True))
    response = get(http, data_url)
    assert response.data == DATA
    assert response.headers["Content-MD5"] != md5_b64(DATA)
    assert len(base64.b64decode(response.headers["Content-MD5"])) == 16


def test_ignore_range(httpd: TestHTTPServer, http: urllib3.PoolManager, data_url: str) -> None:
    httpd.set_fault("/abc/shard-001.tar", Fault(ignore_range=True))
    response = get(http, data_url, Range="bytes=100-199")
    assert (response.status, response.data) == (200, DATA)
    assert "Content-Range" not in response.headers
    assert httpd.bytes_sent == SIZE


def test_rate_limits_body(httpd: TestHTTPServer, http: urllib3.PoolManager) -> None:
    httpd.put_generated("/slow", 100_000, seed=2)
    httpd.set_fault("/slow", Fault(rate=400_000))
    began = time.monotonic()
    response = get(http, httpd.url + "/slow")
    elapsed = time.monotonic() - began
    assert response.data == httpd.expected_bytes("/slow")
    assert 0.2 <= elapsed < 1.0  # 0.25 s at 400 kB/s


def test_delay_before_headers(httpd: TestHTTPServer, http: urllib3.PoolManager, data_url: str) -> None:
    httpd.set_fault("/abc/shard-001.tar", Fault(delay=0.2))
    began = time.monotonic()
    assert get(http, data_url).status == 200
    assert time.monotonic() - began >= 0.2


# -- accounting and connections


def test_bytes_sent_is_exact_over_mixed_requests(
    httpd: TestHTTPServer, http: urllib3.PoolManager, data_url: str
) -> None:
    httpd.put("/small", b"12345")
    get(http, data_url)
    get(http, data_url, Range="bytes=-10")
    get(http, data_url, Range="bytes=20-29")
    get(http, data_url, "HEAD")
    get(http, httpd.url + "/small")
    get(http, httpd.url + "/missing")
    assert httpd.bytes_sent_for("/abc/shard-001.tar") == SIZE + 10 + 10
    assert httpd.bytes_sent == SIZE + 25
    assert [record.bytes_sent for record in httpd.requests] == [SIZE, 10, 10, 0, 5, 0]
    assert [record.status for record in httpd.requests] == [200, 206, 206, 200, 200, 404]
    assert httpd.requests[1].headers["Range"] == "bytes=-10"
    assert httpd.wait_idle(timeout=5)
    assert all((record.end or 0) >= record.start for record in httpd.requests)
    httpd.reset_stats()
    assert (httpd.bytes_sent, httpd.requests, httpd.peak_concurrency) == (0, [], 0)


def test_peak_concurrency(httpd: TestHTTPServer, data_url: str) -> None:
    gate = threading.Event()
    httpd.set_fault("/abc/shard-001.tar", Fault(hold=gate))
    with ThreadPoolExecutor(5) as pool:
        answers = [pool.submit(lambda: requests.get(data_url, timeout=60).status_code) for _ in range(5)]
        held = httpd.wait_in_flight(5, timeout=30)  # all five inside the server together, however loaded the box
        gate.set()
        statuses = [answer.result() for answer in answers]
    assert held, httpd.peak_concurrency
    assert statuses == [200] * 5
    assert httpd.peak_concurrency == 5
    assert httpd.wait_idle(timeout=5)
    assert httpd.in_flight == 0


def test_busy_beyond_turns_away_requests_past_a_limit(httpd: TestHTTPServer, data_url: str) -> None:
    gate = threading.Event()
    httpd.set_fault("/abc/shard-001.tar", Fault(hold=gate, busy_beyond=3))
    with ThreadPoolExecutor(5) as pool:
        kept = [pool.submit(lambda: requests.get(data_url, timeout=60).status_code) for _ in range(3)]
        assert httpd.wait_in_flight(3, timeout=30)
        turned = [requests.get(data_url, timeout=60) for _ in range(2)]  # answered at once, not held
        gate.set()
        statuses = [answer.result() for answer in kept]
    assert statuses == [200] * 3
    assert [(r.status_code, r.headers.get("Retry-After")) for r in turned] == [(503, "1")] * 2


def test_keep_alive_reuses_connection(httpd: TestHTTPServer, data_url: str) -> None:
    with urllib3.HTTPConnectionPool("127.0.0.1", httpd.port, maxsize=1, retries=False) as pool:
        for _ in range(2):
            assert pool.request("GET", "/abc/shard-001.tar").data == DATA
        pool.request("GET", "/missing")
        pool.request("GET", "/abc/shard-001.tar", headers={"Range": "bytes=1-2"})
        httpd.set_fault("/abc/shard-001.tar", Fault(status=503, times=1))
        pool.request("GET", "/abc/shard-001.tar")
        assert pool.num_connections == 1
    assert len({record.connection for record in httpd.requests}) == 1


def test_wait_for_bytes(httpd: TestHTTPServer, http: urllib3.PoolManager) -> None:
    httpd.put_generated("/slow", 20_000, seed=4)
    httpd.set_fault("/slow", Fault(rate=100_000))
    thread = threading.Thread(target=get, args=(http, httpd.url + "/slow"))
    thread.start()
    assert httpd.wait_for_bytes(5_000, "/slow", timeout=5)
    assert httpd.bytes_sent < 20_000
    thread.join()
    assert not httpd.wait_for_bytes(20_001, timeout=0.01)


def test_client_disconnect_is_quiet(httpd: TestHTTPServer, capfd: pytest.CaptureFixture[str]) -> None:
    httpd.put_generated("/big", 64 * BLOCK_SIZE, seed=5)
    with socket.create_connection(("127.0.0.1", httpd.port)) as sock:
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        received = 0
        while received < 1_000_000:
            received += len(sock.recv(65536))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    assert httpd.wait_idle(timeout=5)
    assert httpd.request_count("/big") == 1
    assert 0 < httpd.bytes_sent < 64 * BLOCK_SIZE
    assert httpd.errors == []
    assert capfd.readouterr().err == ""


def test_stop_ends_stalled_requests(http: urllib3.PoolManager) -> None:
    server = TestHTTPServer().start()
    server.put("/x", DATA)
    server.set_fault("/x", Fault(stall_after=10, stall_seconds=30))
    response = http.request("GET", server.url + "/x", preload_content=False)
    began = time.monotonic()
    server.stop()
    assert time.monotonic() - began < 2
    with pytest.raises(urllib3.exceptions.HTTPError):
        response.read()


# -- generated and on-disk content


def test_generated_content_ranges_across_blocks(httpd: TestHTTPServer, http: urllib3.PoolManager) -> None:
    size = 2 * BLOCK_SIZE + 12345
    httpd.put_generated("/gen", size, seed=7)
    expected = httpd.expected_bytes("/gen")
    assert len(expected) == size
    assert expected[:BLOCK_SIZE] != expected[BLOCK_SIZE : 2 * BLOCK_SIZE]
    for start, end in [
        (BLOCK_SIZE - 10, BLOCK_SIZE + 20),
        (BLOCK_SIZE + 3, BLOCK_SIZE + 9),
        (BLOCK_SIZE - 1, 2 * BLOCK_SIZE + 1),
        (0, size),
    ]:
        response = get(http, httpd.url + "/gen", Range=f"bytes={start}-{end - 1}")
        assert response.data == expected[start:end], (start, end)
    assert get(http, httpd.url + "/gen", Range="bytes=-100").data == expected[-100:]


def test_generated_content_is_deterministic(httpd: TestHTTPServer) -> None:
    httpd.put_generated("/a", 5000, seed=1)
    httpd.put_generated("/b", 5000, seed=1)
    httpd.put_generated("/c", 5000, seed=2)
    assert httpd.expected_bytes("/a") == httpd.expected_bytes("/b")
    assert httpd.expected_bytes("/a") != httpd.expected_bytes("/c")
    with TestHTTPServer() as other:
        other.put_generated("/a", 5000, seed=1)
        assert other.expected_bytes("/a") == httpd.expected_bytes("/a")


def test_serve_directory(httpd: TestHTTPServer, http: urllib3.PoolManager, tmp_path: Path) -> None:
    (tmp_path / "abc").mkdir()
    payload = bytes(range(256)) * 5000
    (tmp_path / "abc" / "f.bin").write_bytes(payload)
    (tmp_path / "secret").write_bytes(b"no")
    httpd.serve_directory(tmp_path / "abc")
    url = httpd.url + "/f.bin"
    response = get(http, url)
    assert response.data == payload
    assert response.headers["ETag"].startswith(f'"{len(payload):x}-')
    assert get(http, url, Range="bytes=1000-1999").data == payload[1000:2000]
    assert httpd.bytes_sent == len(payload) + 1000
    assert httpd.expected_bytes("/f.bin") == payload
    httpd.put("/f.bin", b"memory wins")
    assert get(http, url).data == b"memory wins"
    for path in ("/../secret", "/%2e%2e/secret", "/", "/nope"):
        assert raw_get(httpd, path).status == 404, path


# -- command line


def test_standalone(tmp_path: Path) -> None:
    (tmp_path / "file.bin").write_bytes(b"on disk")
    script = Path(__file__).parent.parent.parent / "harness" / "httpd.py"
    command = [sys.executable, str(script), "--root", str(tmp_path), "--port", "0"]
    command += ["--generate", "/abc/shard-{001..003}.tar:10KiB"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert requests.get(url + "/file.bin", timeout=5).content == b"on disk"
        assert len(requests.get(url + "/abc/shard-003.tar", timeout=5).content) == 10240
        process.terminate()
        assert process.wait(timeout=5) == 0

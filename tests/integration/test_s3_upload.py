"""S3 uploads (``S3Source.upload``) against real servers on 127.0.0.1:
SeaweedFS for the happy path, and a tiny HTTP server that answers every
request with 500 for the error classification. Each test points boto3's
chain at its store with ``monkeypatch`` (undone after the test): the
per-process clients are cached per chain, so moto's tests keep theirs."""

from __future__ import annotations

import base64
import hashlib
import os
import queue
import threading
import uuid
from collections.abc import Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dlengine import errors
from harness.seaweedfs import SeaweedFS

s3 = pytest.importorskip("dlengine.sources.s3")
pytest.importorskip("boto3")

_ERROR = b'<?xml version="1.0"?><Error><Code>%s</Code><Message>boom</Message></Error>'


class _Failing(BaseHTTPRequestHandler):
    """Answers ``status`` with S3 error ``code`` to everything, reading request bodies."""

    protocol_version = "HTTP/1.1"
    count = 0
    status = 500
    code = b"InternalError"

    def _answer(self) -> None:
        type(self).count += 1
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = _ERROR % self.code
        self.send_response(self.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_POST = do_GET = do_HEAD = _answer

    def log_message(self, *args: Any) -> None:
        pass


def _point_at(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def failing_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Failing]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{server.server_port}", "AWS_DEFAULT_REGION": "us-east-1"}
    _point_at(monkeypatch, {**env, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    monkeypatch.setattr(s3, "SDK_ATTEMPTS", 1)  # botocore's backoff would take seconds per test
    _Failing.count, _Failing.status, _Failing.code = 0, 500, b"InternalError"
    yield _Failing
    server.shutdown()
    server.server_close()


@pytest.fixture
def bucket(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> str:
    _point_at(monkeypatch, seaweedfs.env)
    name = f"up-{uuid.uuid4().hex[:12]}"
    seaweedfs.client().create_bucket(Bucket=name)
    return name


def _file(tmp_path: Path, size: int, name: str = "f") -> tuple[Path, str]:
    data = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    path = tmp_path / name
    path.write_bytes(data)
    return path, hashlib.md5(data).hexdigest()


@pytest.mark.parametrize("size", [10_240, s3.SMALL_UPLOAD + 1])
@pytest.mark.parametrize(("status", "code"), [(500, b"InternalError"), (503, b"SlowDown"), (400, b"Throttling")])
def test_a_store_answering_busy_is_a_transient_error(
    failing_store: Any, tmp_path: Path, size: int, status: int, code: bytes
) -> None:
    failing_store.status, failing_store.code = status, code
    path, md5 = _file(tmp_path, size)
    with pytest.raises(errors.ServerBusyError):
        s3.S3Source("bkt").upload("k", path, md5, metadata={"dlengine-size": str(size)})
    assert failing_store.count >= 1


def test_upload_failed_error_is_classified_by_the_client_error_inside(failing_store: Any, tmp_path: Path) -> None:
    """boto3's own ``upload_file`` raises S3UploadFailedError around the
    ClientError: a 500 inside is transient, a 403 inside is denied."""
    from boto3.exceptions import S3UploadFailedError

    path, _ = _file(tmp_path, 1000)
    for status, code, expected in [(500, b"InternalError", errors.ServerBusyError), (403, b"AccessDenied", None)]:
        failing_store.status, failing_store.code = status, code
        with pytest.raises(S3UploadFailedError) as raised:
            s3.client().upload_file(str(path), "bkt", "k")
        translated = s3.translate(raised.value, "s3://bkt/k")
        assert isinstance(translated, expected or errors.SourceDeniedError), translated


def test_clients_follow_the_chain_they_were_made_for(failing_store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    first = s3.client()
    assert first.meta.endpoint_url == os.environ["AWS_ENDPOINT_URL"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    second = s3.client()
    assert second is not first and second.meta.endpoint_url == "http://127.0.0.1:9"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "other")
    assert s3.client() is not second  # other credentials, another client
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    assert s3.client() is second


def test_small_upload_is_one_put_with_content_md5(
    bucket: str, seaweedfs: SeaweedFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A presigned PUT through libcurl (static keys and an endpoint: no
    SDK client at all), its metadata and Content-MD5 signed headers."""
    path, md5 = _file(tmp_path, 10_240)
    monkeypatch.setattr(s3, "client", lambda *_a, **_k: pytest.fail("a small upload asked the SDK"))
    s3.S3Source(bucket).upload("small", path, md5, metadata={"dlengine-size": "10240"})
    head = seaweedfs.client().head_object(Bucket=bucket, Key="small")
    assert head["ETag"].strip('"') == md5
    assert head["Metadata"] == {"dlengine-size": "10240"}
    # the store checks Content-MD5: a wrong one is refused, nothing stored
    with pytest.raises(errors.DlengineError) as refused:
        s3.S3Source(bucket).upload("bad", path, "0" * 32)
    assert not isinstance(refused.value, errors.TransientError), refused.value  # a wrong digest is not retried
    assert "Contents" not in seaweedfs.client().list_objects_v2(Bucket=bucket, Prefix="bad")


def test_uploads_start_no_thread_per_object(
    bucket: str, seaweedfs: SeaweedFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small uploads start no thread at all; large ones share one bounded
    pool whose threads live on (boto3's ``upload_file`` starts a new
    manager's threads for each call and stops them at its end)."""
    small, small_md5 = _file(tmp_path, 10_240, "small")
    large, large_md5 = _file(tmp_path, s3.SMALL_UPLOAD + 4096, "large")
    source = s3.S3Source(bucket)
    source.upload("warm-small", small, small_md5)  # the client exists
    started: list[threading.Thread] = []
    original = threading.Thread.start

    def counting(self: threading.Thread) -> None:
        started.append(self)
        original(self)

    monkeypatch.setattr(threading.Thread, "start", counting)
    for i in range(20):
        source.upload(f"small-{i}", small, small_md5)
    assert started == []
    for i in range(3):
        source.upload(f"large-{i}", large, large_md5)
    config = s3.transfer_manager().config
    assert 0 < len(started) <= config.max_request_concurrency + config.max_submission_concurrency + 1, started
    assert all(thread.is_alive() for thread in started)  # the pool's, kept for the next upload
    head = seaweedfs.client().head_object(Bucket=bucket, Key="large-2")
    assert head["ContentLength"] == s3.SMALL_UPLOAD + 4096
    assert head["ETag"].strip('"').endswith("-2")  # multipart, 8 MiB parts


class _Recording(BaseHTTPRequestHandler):
    """Takes every PUT (200), keeping its headers and body."""

    protocol_version = "HTTP/1.1"
    puts: list[tuple[dict[str, str], bytes]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).puts.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.send_header("ETag", '"' + hashlib.md5(body).hexdigest() + '"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_bytes_in_memory_go_with_a_content_md5_computed_when_none_is_given(
    bucket: str, seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Dask batch uploads small objects from memory (``Context.hold``):
    one presigned PUT of those bytes, with a Content-MD5 even when the
    source gave no digest (the store checks what it got); stored as sent."""
    data = os.urandom(10_240)
    s3.S3Source(bucket).upload("mem", data, None, metadata={"dlengine-size": "10240"})
    head = seaweedfs.client().head_object(Bucket=bucket, Key="mem")
    assert head["Metadata"] == {"dlengine-size": "10240"}
    assert seaweedfs.client().get_object(Bucket=bucket, Key="mem")["Body"].read() == data
    # what went on the wire: a recording server in the store's place
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recording)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_port}")
        _Recording.puts = []
        s3.S3Source(bucket).upload("mem", data, None)
    finally:
        server.shutdown()
        server.server_close()
    ((headers, body),) = _Recording.puts
    assert body == data
    assert base64.b64decode(headers["content-md5"]) == hashlib.md5(data).digest()


def _soon(source: Any, key: str, data: bytes, md5: str | None, metadata: dict[str, str] | None = None) -> Any:
    """``upload_soon``, waited for: what its callback got."""
    got: queue.SimpleQueue[errors.DlengineError | None] = queue.SimpleQueue()
    assert source.upload_soon(key, data, md5, metadata, got.put)
    return got.get(timeout=30)


def test_uploads_soon_share_one_loop_and_store_what_was_sent(bucket: str, seaweedfs: SeaweedFS) -> None:
    """Many presigned PUTs of bytes at once on the process's one PUT loop
    (no thread per object), each stored as sent with its metadata; a wrong
    Content-MD5 is refused for good and nothing is stored."""
    from dlengine.sources import s3_put

    source = s3.S3Source(bucket)
    assert _soon(source, "warm", b"x", None) is None  # the loop exists
    threads = threading.active_count()
    got: queue.SimpleQueue[tuple[int, errors.DlengineError | None]] = queue.SimpleQueue()
    bodies = [os.urandom(1_000 + i) for i in range(40)]
    for i, data in enumerate(bodies):
        md5 = hashlib.md5(data).hexdigest()
        assert source.upload_soon(f"soon-{i}", data, md5, {"dlengine-size": str(len(data))}, partial(_put_pair, got, i))
    results = dict(got.get(timeout=30) for _ in bodies)
    assert results == dict.fromkeys(range(40)), results
    assert threading.active_count() == threads and s3_put.loop().thread.is_alive()
    client = seaweedfs.client()
    for i, data in enumerate(bodies):
        assert client.get_object(Bucket=bucket, Key=f"soon-{i}")["Body"].read() == data
    assert client.head_object(Bucket=bucket, Key="soon-7")["Metadata"] == {"dlengine-size": "1007"}
    refused = _soon(source, "bad", bodies[0], "0" * 32)
    assert isinstance(refused, errors.DlengineError) and not isinstance(refused, errors.TransientError), refused
    assert "Contents" not in client.list_objects_v2(Bucket=bucket, Prefix="bad")


def _put_pair(got: queue.SimpleQueue[tuple[int, errors.DlengineError | None]], i: int, error: Any) -> None:
    got.put((i, error))


def test_upload_soon_classifies_refusals_and_declines_what_it_cannot_send(failing_store: Any) -> None:
    source = s3.S3Source("bkt")
    for status, code, expected in [
        (500, b"InternalError", errors.ServerBusyError),
        (503, b"SlowDown", errors.ServerBusyError),
        (403, b"AccessDenied", errors.SourceDeniedError),
    ]:
        failing_store.status, failing_store.code = status, code
        assert isinstance(_soon(source, "k", b"abc", None), expected), code
    count = failing_store.count
    never = pytest.fail
    assert not source.upload_soon("a/../b", b"abc", None, None, never)  # a key libcurl would resolve
    assert not source.upload_soon("k", b"abc", None, {"x": "two\nlines"}, never)  # not a header value
    assert not source.upload_soon("k", b"\0" * (s3.SMALL_UPLOAD + 1), None, None, never)  # multipart's
    assert failing_store.count == count  # nothing sent for those


def test_a_put_loop_that_stops_fails_what_it_had_and_is_replaced(
    failing_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dlengine.sources import s3_put

    first = s3_put.loop()

    def broken() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(first, "_perform", broken)
    got: queue.SimpleQueue[errors.DlengineError | None] = queue.SimpleQueue()
    first.submit("http://127.0.0.1:9/bkt/k", {}, b"abc", 5.0, "s3://bkt/k", s3._classify, got.put)
    assert isinstance(got.get(timeout=10), s3_put.LoopGone)  # transient: the row is tried again
    first.thread.join(10)
    assert not first.thread.is_alive()
    second = s3_put.loop()
    assert second is not first
    failing_store.status, failing_store.code = 500, b"InternalError"
    assert isinstance(_soon(s3.S3Source("bkt"), "k", b"abc", None), errors.ServerBusyError)

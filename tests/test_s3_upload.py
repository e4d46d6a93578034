"""S3 uploads (``S3Source.upload``) against real servers on 127.0.0.1:
SeaweedFS for the happy path, and a tiny HTTP server that answers every
request with 500 for the error classification."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dlengine import errors
from tests.seaweedfs import SeaweedFS

s3 = pytest.importorskip("dlengine.sources.s3")
pytest.importorskip("boto3")

_ERROR = b'<?xml version="1.0"?><Error><Code>InternalError</Code><Message>boom</Message></Error>'


class _Failing(BaseHTTPRequestHandler):
    """Answers 500 InternalError to everything, reading request bodies."""

    protocol_version = "HTTP/1.1"
    count = 0

    def _answer(self) -> None:
        type(self).count += 1
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(500)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(_ERROR)))
        self.end_headers()
        self.wfile.write(_ERROR)

    do_PUT = do_POST = do_GET = do_HEAD = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def failing_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Failing]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    _fresh_clients(monkeypatch)
    _Failing.count = 0
    yield _Failing
    server.shutdown()


def _fresh_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-process clients are bound to one endpoint: start empty."""
    monkeypatch.setattr(s3, "_clients", {})
    monkeypatch.setattr(s3, "_transfers", [])


@pytest.fixture
def bucket(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> str:
    _fresh_clients(monkeypatch)
    name = f"up-{uuid.uuid4().hex[:12]}"
    seaweedfs.client().create_bucket(Bucket=name)
    return name


def _file(tmp_path: Path, size: int, name: str = "f") -> tuple[Path, str]:
    data = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    path = tmp_path / name
    path.write_bytes(data)
    return path, hashlib.md5(data).hexdigest()


@pytest.mark.parametrize("size", [10_240, s3.SMALL_UPLOAD + 1])
def test_a_store_answering_500_is_a_transient_error(failing_store: Any, tmp_path: Path, size: int) -> None:
    path, md5 = _file(tmp_path, size)
    with pytest.raises(errors.ServerBusyError):
        s3.S3Source("bkt").upload("k", path, md5, metadata={"dlengine-size": str(size)})
    assert failing_store.count >= 1


def test_small_upload_is_one_put_with_content_md5(bucket: str, seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    path, md5 = _file(tmp_path, 10_240)
    s3.S3Source(bucket).upload("small", path, md5, metadata={"dlengine-size": "10240"})
    head = seaweedfs.client().head_object(Bucket=bucket, Key="small")
    assert head["ETag"].strip('"') == md5
    assert head["Metadata"] == {"dlengine-size": "10240"}
    # the store checks Content-MD5: a wrong one is refused, nothing stored
    with pytest.raises(errors.DlengineError):
        s3.S3Source(bucket).upload("bad", path, "0" * 32)
    assert "Contents" not in seaweedfs.client().list_objects_v2(Bucket=bucket, Prefix="bad")


def test_uploads_start_no_thread_per_object(
    bucket: str, seaweedfs: SeaweedFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small, small_md5 = _file(tmp_path, 10_240, "small")
    large, large_md5 = _file(tmp_path, s3.SMALL_UPLOAD + 4096, "large")
    source = s3.S3Source(bucket)
    source.upload("warm-small", small, small_md5)
    source.upload("warm-large", large, large_md5)  # starts the one transfer manager's pool
    started: list[str] = []
    original = threading.Thread.start

    def counting(self: threading.Thread) -> None:
        started.append(self.name)
        original(self)

    monkeypatch.setattr(threading.Thread, "start", counting)
    for i in range(20):
        source.upload(f"small-{i}", small, small_md5)
    assert started == []
    source.upload("large-2", large, large_md5)
    source.upload("large-3", large, large_md5)
    assert started == []
    head = seaweedfs.client().head_object(Bucket=bucket, Key="large-3")
    assert head["ContentLength"] == s3.SMALL_UPLOAD + 4096

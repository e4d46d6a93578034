"""A large object whose size is known before its first answer (a cloud
listing's, ``SignedGet.ranged``) asks for its first segment only: no
whole-object answer cut at the end of its segment (the server went on
sending the rest), every answer a 206, the other segments guarded by the
first one's ETag, the MD5 still verified. In process, one CurlLoop against
the test server."""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from dlengine import errors
from dlengine.engine import curl
from dlengine.ledger.models import Task
from dlengine.ledger.states import ObjectState
from dlengine.sources.base import ObjectInfo, SignedGet
from dlengine.supervisor import work
from harness.httpd import Fault, TestHTTPServer

THRESHOLD = 4 << 20
SIZE = 8 << 20  # eight segments of 1 MiB (none smaller than a quarter of the threshold)


@pytest.fixture
def server() -> Iterator[TestHTTPServer]:
    with TestHTTPServer() as httpd:
        yield httpd


def _as_is(info: ObjectInfo, headers: Mapping[str, str]) -> ObjectInfo:
    return info


class _Loop:
    def __init__(self) -> None:
        self.results: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.loop = curl.CurlLoop(lambda result, _sidecar: self.results.put(result), THRESHOLD)
        self.thread = threading.Thread(target=self.loop.run, daemon=True)
        self.thread.start()

    def get(self, tmp_path: Path, url: str, listed_size: int, row: int = 1, attempts: int = 1) -> Any:
        """A cloud object's GET (signed, ranged answers carry its ETag) of
        a listed size."""
        task = Task(row, "j", 1, f"o{row}.bin", f"s3://bkt/o{row}.bin", 1, attempts, "aws", "", "bkt", 10.0, 0,
                    size=listed_size)  # fmt: skip
        signed = SignedGet(url, {}, _as_is, ranged=True)
        self.loop.submit(task, work.Context(workdir=tmp_path, headers={}, fsync=False, max_attempts=1), signed)
        return self.results.get(timeout=60)

    def __enter__(self) -> _Loop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.stop()
        self.thread.join(20)


def _ranges(server: TestHTTPServer, path: str) -> list[tuple[int, str | None, str | None]]:
    return [(r.status, r.headers.get("Range"), r.headers.get("If-Range")) for r in server.requests if r.path == path]


def test_the_first_request_asks_for_the_first_segment_only(tmp_path: Path, server: TestHTTPServer) -> None:
    data = bytes(range(256)) * (SIZE // 256)
    server.put("/big.bin", data)  # (its ETag: the MD5, what an S3 listing gives)
    etag = server.etag("/big.bin")
    with _Loop() as loop:
        outcome, dest = loop.get(tmp_path, server.url + "/big.bin", SIZE)
    assert outcome.state is ObjectState.DONE, outcome
    assert outcome.checksum == "md5:" + hashlib.md5(data).hexdigest()  # verified
    assert Path(dest).read_bytes() == data
    step = SIZE // 8
    got = _ranges(server, "/big.bin")
    assert got[0] == (206, f"bytes=0-{step - 1}", None)  # no whole-object answer, nothing cut
    assert sorted(got[1:]) == [(206, f"bytes={i * step}-{(i + 1) * step - 1}", etag) for i in range(1, 8)]


def test_a_wrong_md5_still_fails_the_object(tmp_path: Path, server: TestHTTPServer) -> None:
    data = b"x" * SIZE
    server.put("/bad.bin", data, etag=hashlib.md5(b"other bytes").hexdigest())
    with _Loop() as loop:
        outcome, dest = loop.get(tmp_path, server.url + "/bad.bin", SIZE)
    assert outcome.state is ObjectState.FAILED and outcome.code is errors.ErrorCode.CHECKSUM, outcome
    assert dest is None


@pytest.mark.parametrize("size", [100_000, SIZE + (3 << 20) + 5], ids=["smaller", "larger"])
def test_an_object_whose_size_changed_since_its_listing_is_stored_as_it_is(
    tmp_path: Path, server: TestHTTPServer, size: int
) -> None:
    """Smaller than the first segment: it came whole in the first answer;
    larger: the rest in segments of about the first one's size."""
    data = hashlib.sha256(b"seed").digest() * (size // 32) + b"e" * (size % 32)
    server.put("/moved.bin", data)
    with _Loop() as loop:
        outcome, dest = loop.get(tmp_path, server.url + "/moved.bin", SIZE)
    assert outcome.state is ObjectState.DONE and outcome.size == size, outcome
    assert outcome.checksum == "md5:" + hashlib.md5(data).hexdigest()
    assert Path(dest).read_bytes() == data
    got = _ranges(server, "/moved.bin")
    assert all(status == 206 for status, _, _ in got), got
    assert len(got) == (1 if size < SIZE // 8 else curl.SEGMENTS), got


def test_a_weak_etag_cannot_guard_segments_the_next_attempt_comes_whole(tmp_path: Path, server: TestHTTPServer) -> None:
    server.put("/weak.bin", b"w" * SIZE, etag='W/"v1"')
    with _Loop() as loop:
        first, _ = loop.get(tmp_path, server.url + "/weak.bin", SIZE)
        again, dest = loop.get(tmp_path, server.url + "/weak.bin", SIZE, attempts=2)
    assert first.state is not ObjectState.DONE and first.code is errors.ErrorCode.HTTP, first
    assert again.state is ObjectState.DONE and Path(dest).read_bytes() == b"w" * SIZE, again
    assert [rng for _, rng, _ in _ranges(server, "/weak.bin")] == [f"bytes=0-{SIZE // 8 - 1}", None]


def test_a_server_that_ignores_the_range_sends_it_whole_in_one_stream(tmp_path: Path, server: TestHTTPServer) -> None:
    data = b"z" * SIZE
    server.put("/whole.bin", data)
    server.set_fault("/whole.bin", Fault(ignore_range=True))
    with _Loop() as loop:
        outcome, dest = loop.get(tmp_path, server.url + "/whole.bin", SIZE)
        other, _ = loop.get(tmp_path, server.url + "/whole.bin", SIZE, row=2)
    assert outcome.state is ObjectState.DONE and Path(dest).read_bytes() == data, outcome
    assert other.state is ObjectState.DONE, other
    got = _ranges(server, "/whole.bin")
    assert got == [(200, f"bytes=0-{SIZE // 8 - 1}", None), (200, None, None)], got  # then asked whole

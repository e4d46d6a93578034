"""URLs the libcurl loop cannot send as they are: a redirect's Location
with a space or raw UTF-8 is percent-encoded, one libcurl refuses fails its
object at once (not retried), and one pycurl cannot be given fails its
object, never the loop. In process, one CurlLoop against the test server."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dlengine import errors
from dlengine.engine import curl
from dlengine.ledger.models import Task
from dlengine.ledger.states import ObjectState
from dlengine.supervisor import work
from harness.httpd import Fault, TestHTTPServer


@pytest.fixture
def server() -> Iterator[TestHTTPServer]:
    with TestHTTPServer() as httpd:
        yield httpd


@pytest.fixture
def loop() -> Iterator[_Loop]:
    running = _Loop()
    yield running
    running.stop()


class _Loop:
    def __init__(self) -> None:
        self.results: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.loop = curl.CurlLoop(lambda result, _sidecar: self.results.put(result))
        self.thread = threading.Thread(target=self.loop.run, daemon=True)
        self.thread.start()

    def get(self, tmp_path: Path, link: str, row: int = 1) -> Any:
        task = Task(row, "j", 1, f"o{row}.bin", link, 1, 1, "ais", "", "bkt", 10.0, 0)
        self.loop.submit(task, work.Context(workdir=tmp_path, headers={}, fsync=False, max_attempts=5))
        return self.results.get(timeout=60)

    def stop(self) -> None:
        self.loop.stop()
        self.thread.join(20)
        assert not self.thread.is_alive()


def _raw(text: str) -> str:
    """``text``'s UTF-8 bytes as the test server puts them on the wire
    (its header lines are Latin-1: a character a byte)."""
    return text.encode("utf-8").decode("latin-1")


def test_a_location_with_raw_utf8_and_a_space_is_followed_percent_encoded(
    tmp_path: Path, server: TestHTTPServer, loop: _Loop
) -> None:
    server.put_generated("/d/é x.bin", 10_000, seed=1)  # (the server decodes the paths it is asked)
    server.set_fault("/r/x", Fault(status=302, location=_raw("/d/é x.bin")))
    (outcome, dest) = loop.get(tmp_path, server.url + "/r/x")
    assert outcome.state is ObjectState.DONE, outcome
    assert Path(dest).read_bytes() == server.expected_bytes("/d/é x.bin")
    assert [r.path for r in server.requests] == ["/r/x", "/d/é x.bin"]


def test_a_location_libcurl_refuses_fails_the_object_at_once(
    tmp_path: Path, server: TestHTTPServer, loop: _Loop
) -> None:
    server.set_fault("/r/bad", Fault(status=302, location="http://127.0.0.1:99999/x"))
    (outcome, _dest) = loop.get(tmp_path, server.url + "/r/bad")
    assert outcome.state is ObjectState.FAILED, outcome  # (not PENDING: another attempt would be the same)
    assert outcome.code is errors.ErrorCode.INVALID, outcome
    assert "99999" in (outcome.error or ""), outcome


def test_a_url_pycurl_cannot_take_fails_its_object_not_the_loop(
    tmp_path: Path, server: TestHTTPServer, loop: _Loop
) -> None:
    server.put_generated("/ok.bin", 10_000, seed=2)
    (outcome, _dest) = loop.get(tmp_path, server.url + "/é.bin", row=1)  # (the spec encodes it: not this loop)
    assert outcome.state is ObjectState.FAILED and outcome.code is errors.ErrorCode.INVALID, outcome
    (outcome, dest) = loop.get(tmp_path, server.url + "/ok.bin", row=2)
    assert outcome.state is ObjectState.DONE, outcome
    assert Path(dest).read_bytes() == server.expected_bytes("/ok.bin")
    assert loop.thread.is_alive()

"""URLs the libcurl loop cannot send as they are: a redirect's Location
with a space or raw UTF-8 is percent-encoded, one libcurl refuses fails its
object at once (not retried), and one pycurl cannot be given fails its
object, never the loop. In process, one CurlLoop against the test server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dlengine import errors
from dlengine.ledger.states import ObjectState
from harness.httpd import Fault, TestHTTPServer
from tests.curl_driver import LoopDriver


@pytest.fixture
def server() -> Iterator[TestHTTPServer]:
    with TestHTTPServer() as httpd:
        yield httpd


@pytest.fixture
def loop() -> Iterator[LoopDriver]:
    running = LoopDriver(max_attempts=5)
    yield running
    running.stop()
    assert not running.thread.is_alive()


def _raw(text: str) -> str:
    """``text``'s UTF-8 bytes as the test server puts them on the wire
    (its header lines are Latin-1: a character a byte)."""
    return text.encode("utf-8").decode("latin-1")


def test_a_location_with_raw_utf8_and_a_space_is_followed_percent_encoded(
    tmp_path: Path, server: TestHTTPServer, loop: LoopDriver
) -> None:
    server.put_generated("/d/é x.bin", 10_000, seed=1)  # (the server decodes the paths it is asked)
    server.set_fault("/r/x", Fault(status=302, location=_raw("/d/é x.bin")))
    (outcome, dest) = loop.get(tmp_path, server.url + "/r/x")
    assert outcome.state is ObjectState.DONE, outcome
    assert Path(dest).read_bytes() == server.expected_bytes("/d/é x.bin")
    assert [r.path for r in server.requests] == ["/r/x", "/d/é x.bin"]


def test_a_location_libcurl_refuses_fails_the_object_at_once(
    tmp_path: Path, server: TestHTTPServer, loop: LoopDriver
) -> None:
    server.set_fault("/r/bad", Fault(status=302, location="http://127.0.0.1:99999/x"))
    (outcome, _dest) = loop.get(tmp_path, server.url + "/r/bad")
    assert outcome.state is ObjectState.FAILED, outcome  # (not PENDING: another attempt would be the same)
    assert outcome.code is errors.ErrorCode.INVALID, outcome
    assert "99999" in (outcome.error or ""), outcome


def test_a_url_pycurl_cannot_take_fails_its_object_not_the_loop(
    tmp_path: Path, server: TestHTTPServer, loop: LoopDriver
) -> None:
    server.put_generated("/ok.bin", 10_000, seed=2)
    (outcome, _dest) = loop.get(tmp_path, server.url + "/é.bin", row=1)  # (the spec encodes it: not this loop)
    assert outcome.state is ObjectState.FAILED and outcome.code is errors.ErrorCode.INVALID, outcome
    (outcome, dest) = loop.get(tmp_path, server.url + "/ok.bin", row=2)
    assert outcome.state is ObjectState.DONE, outcome
    assert Path(dest).read_bytes() == server.expected_bytes("/ok.bin")
    assert loop.thread.is_alive()

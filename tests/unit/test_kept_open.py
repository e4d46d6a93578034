"""Whether a server keeps an answer's connection open (``curl._kept_open``),
read from the answer's header lines as libcurl hands them over: the loop
counts such connections as free for the next request, and opens new ones
only ``curl.CONNECTING`` at a time."""

from __future__ import annotations

import pytest

from dlengine.engine import curl


@pytest.mark.parametrize(
    ("lines", "kept"),
    [
        ([b"HTTP/1.1 200 OK\r\n", b"Content-Length: 3\r\n", b"\r\n"], True),
        ([b"HTTP/1.1 200 OK\r\n", b"Connection: close\r\n", b"\r\n"], False),
        ([b"HTTP/1.1 404 Not Found\r\n", b"connection: Close\r\n", b"\r\n"], False),
        ([b"HTTP/1.0 200 OK\r\n", b"Server: SimpleHTTP/0.6\r\n", b"\r\n"], False),
        ([b"HTTP/1.0 200 OK\r\n", b"Connection: keep-alive\r\n", b"\r\n"], True),
        ([b"HTTP/2 200\r\n", b"content-length: 3\r\n", b"\r\n"], True),
        ([b"HTTP/1.1 100 Continue\r\n", b"\r\n", b"HTTP/1.0 200 OK\r\n", b"\r\n"], False),
        ([], False),
    ],
)
def test_kept_open(lines: list[bytes], kept: bool) -> None:
    assert curl._kept_open(lines) is kept

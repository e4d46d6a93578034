"""What an HTTP answer means (dlengine.sources.answer.interpret): the pure
rules every HTTP client of dlengine shares. The same rules meet real
misbehaving servers end to end in tests/test_server_checks.py."""

from __future__ import annotations

import pytest

from dlengine import errors
from dlengine.sources.answer import Answer, conditional_headers, content_range, interpret, parse_header_lines
from dlengine.sources.base import Request

URL = "http://127.0.0.1:1/o"
ETAG = '"v1"'
DATE = "Mon, 01 Jan 2024 00:00:00 GMT"
RESUME = Request(URL, offset=100, if_range=ETAG)


def _partial(start: int = 100, end: int = 999, total: int = 1000, **extra: str) -> dict[str, str]:
    return {"Content-Range": f"bytes {start}-{end}/{total}", "Content-Length": str(end - start + 1), **extra}


def test_whole_object() -> None:
    answer = interpret(Request(URL), 200, {"content-length": "1000", "ETag": ETAG})
    assert answer == Answer(answer.info, 0, False, True)
    assert (answer.info.size, answer.info.etag, answer.info.checksums) == (1000, ETAG, {})


def test_a_200_to_a_ranged_request_starts_over() -> None:
    answer = interpret(RESUME, 200, {"Content-Length": "1000", "ETag": '"v2"'})
    assert answer.offset == 0 and answer.info.size == 1000


def test_a_206_with_the_validator_resumes() -> None:
    answer = interpret(RESUME, 206, _partial(ETag=ETAG))
    assert (answer.offset, answer.info.size, answer.body) == (100, 1000, True)
    by_date = Request(URL, offset=100, if_range=DATE)
    assert interpret(by_date, 206, _partial(**{"Last-Modified": DATE})).offset == 100


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        (_partial(ETag='"v2"'), 'validator "v2", not the "v1"'),
        (_partial(), "validator none"),
        (_partial(start=0, ETag=ETAG), "bytes from 0 where 100"),
        (_partial(end=500, ETag=ETAG), "ending at byte 500 of 1000"),
        ({"Content-Length": "900", "ETag": ETAG}, "missing or malformed Content-Range"),
        ({"Content-Range": "bytes 100-99/1000", "ETag": ETAG}, "malformed Content-Range"),
    ],
)
def test_a_206_that_is_not_the_answer_asked_for_starts_over(headers: dict[str, str], words: str) -> None:
    with pytest.raises(errors.SourceChangedError, match="starting over from zero") as caught:
        interpret(RESUME, 206, headers)
    assert caught.value.restart and words in str(caught.value)


def test_304_only_to_a_conditional_request() -> None:
    answer = interpret(Request(URL, if_none_match=ETAG), 304, {"ETag": ETAG})
    assert answer.not_modified and not answer.body
    assert interpret(Request(URL, if_modified_since=DATE), 304, {}).not_modified
    with pytest.raises(errors.SourceHTTPError, match="HTTP 304 Not Modified to a request that was not conditional"):
        interpret(Request(URL), 304, {})
    with pytest.raises(errors.SourceHTTPError, match="304"):
        interpret(RESUME, 304, {"ETag": ETAG})


@pytest.mark.parametrize("status", [204, 205])
def test_no_content_is_no_object(status: int) -> None:
    with pytest.raises(errors.SourceHTTPError, match=f"HTTP {status} No Content: the server sent no object"):
        interpret(Request(URL), status, {}, "No Content")


@pytest.mark.parametrize("status", [300, 301, 302, 303, 305, 307, 308])
def test_a_redirect_that_reaches_interpret_is_an_error(status: int) -> None:
    with pytest.raises(errors.RedirectError, match=f"HTTP {status}"):
        interpret(Request(URL), status, {"Location": "/elsewhere"})


def test_unexpected_success_status() -> None:
    with pytest.raises(errors.SourceHTTPError, match="unexpected HTTP 202"):
        interpret(Request(URL), 202, {})


def test_416_for_exactly_the_kept_bytes_is_complete() -> None:
    answer = interpret(Request(URL, offset=1000, if_range=ETAG), 416, {"Content-Range": "bytes */1000", "ETag": ETAG})
    assert (answer.offset, answer.body, answer.info.size) == (1000, False, 1000)
    with pytest.raises(errors.SourceChangedError):
        interpret(Request(URL, offset=1000, if_range=ETAG), 416, {"Content-Range": "bytes */2000", "ETag": ETAG})


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (404, errors.SourceNotFoundError),
        (410, errors.SourceNotFoundError),
        (401, errors.SourceDeniedError),
        (403, errors.SourceDeniedError),
        (400, errors.SourceHTTPError),
        (429, errors.ServerBusyError),
        (503, errors.ServerBusyError),
        (599, errors.ServerBusyError),
    ],
)
def test_error_statuses(status: int, kind: type[Exception]) -> None:
    with pytest.raises(kind, match=f"HTTP {status}"):
        interpret(Request(URL), status, {"Retry-After": "3"})


def test_retry_after_is_kept() -> None:
    with pytest.raises(errors.ServerBusyError) as caught:
        interpret(Request(URL), 503, {"retry-after": "7"})
    assert caught.value.retry_after == 7.0


def test_a_declared_size_above_the_maximum_fails_at_once() -> None:
    with pytest.raises(errors.ObjectTooLargeError, match=r"declares 1001 bytes, more than .* 1000 bytes") as caught:
        interpret(Request(URL), 200, {"Content-Length": "1001"}, max_size=1000)
    assert caught.value.code is errors.ErrorCode.SIZE
    with pytest.raises(errors.ObjectTooLargeError):
        interpret(RESUME, 206, _partial(end=1999, total=2000, ETag=ETAG), max_size=1000)
    assert interpret(Request(URL), 200, {"Content-Length": "1000"}, max_size=1000).info.size == 1000
    assert interpret(Request(URL), 200, {}, max_size=1000).info.size is None  # cut while reading


def test_header_names_without_case() -> None:
    answer = interpret(RESUME, 206, {"CONTENT-RANGE": "bytes 100-999/1000", "etag": ETAG, "CoNtEnT-MD5": "x"})
    assert answer.offset == 100


def test_conditional_headers() -> None:
    assert conditional_headers(RESUME) == {"Range": "bytes=100-", "If-Range": ETAG}
    assert conditional_headers(Request(URL, if_none_match=ETAG)) == {"If-None-Match": ETAG}
    assert conditional_headers(Request(URL, if_modified_since=DATE)) == {"If-Modified-Since": DATE}
    assert conditional_headers(Request(URL)) == {}


def test_content_range() -> None:
    assert content_range("bytes 0-9/10") == (0, 9, 10)
    assert content_range("bytes 5-9/*") == (5, 9, None)
    for bad in (None, "", "bytes */10", "bytes 5-4/10", "bytes 0-10/10", "items 0-1/2"):
        assert content_range(bad) is None


def test_parse_header_lines_keeps_the_last_answer() -> None:
    lines = [
        b"HTTP/1.1 100 Continue\r\n",
        b"\r\n",
        b"HTTP/1.1 302 Found\r\n",
        b"Location: /x\r\n",
        b"\r\n",
        b"HTTP/2 206\r\n",
        b"Content-Range: bytes 100-999/1000\r\n",
        b'ETag: "v1"\r\n',
        b"X-Multi: a\r\n",
        b"x-multi: b\r\n",
        b"X-Folded: one\r\n",
        b"\ttwo\r\n",
        b"\r\n",
    ]
    status, reason, headers = parse_header_lines(lines)
    assert (status, reason) == (206, "")
    assert headers == {
        "content-range": "bytes 100-999/1000",
        "etag": '"v1"',
        "x-multi": "a, b",
        "x-folded": "one two",
    }
    assert interpret(RESUME, status, headers, reason).offset == 100
    assert parse_header_lines(["HTTP/1.1 404 Not Found", "Content-Length: 0"])[:2] == (404, "Not Found")

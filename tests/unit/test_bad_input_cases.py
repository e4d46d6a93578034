"""The bad inputs of issue 13 through the parser: each refused naming its
field (and never echoing a password), the near misses accepted. The CLI's
exit 2 and the API's 400 over the same cases, nothing created:
tests/e2e/test_bad_input_refused.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dlengine.errors import SpecError
from dlengine.spec import parse_job

B = {"name": "b"}
LINK = "http://127.0.0.1:9/x.bin"


def single(**fields: Any) -> dict[str, Any]:
    return {"type": "single", "bucket": B, "link": LINK, **fields}


def ranged(template: str, **fields: Any) -> dict[str, Any]:
    return {"type": "range", "bucket": B, "template": template, **fields}


CASES: list[tuple[str, dict[str, Any], str, str]] = [
    # control characters in given, derived and template names, and subdirs
    ("newline in name", single(object_name="a\nb"), "object_name", "control character U+000A"),
    ("CR in name", single(object_name="ok\rdnl-forged"), "object_name", "U+000D"),
    ("ESC in name", single(object_name="a\x1b[31mred"), "object_name", "U+001B"),
    ("DEL in name", single(object_name="a\x7f"), "object_name", "U+007F"),
    ("C1 CSI in name", single(object_name="a\x9b2J"), "object_name", "U+009B"),
    ("bidi override", single(object_name="txt.\u202eexe"), "object_name", "U+202E"),
    ("derived newline", single(link="http://127.0.0.1:9/a%0Ab"), "link", "U+000A"),
    ("multi map key", {"type": "multi", "bucket": B, "objects": {"a\tb": LINK}}, 'objects["a\\tb"]', "U+0009"),
    ("multi derived ESC", {"type": "multi", "bucket": B, "objects": [LINK, "http://h/%1B"]}, "objects[1]", "U+001B"),
    ("subdir CR", ranged("http://h/x{1..3}", subdir="a\rb"), "subdir", "U+000D"),
    ("template LF", ranged("http://h/%0Ax{1..3}"), "template", "U+000A"),
    # templates whose decoded names collide or climb out
    ("escape from range", ranged("http://h/x%2{0..9}"), "template", "percent-escape"),
    ("decoded digit", ranged("http://h/{1..12}%31{1..12}"), "template", "duplicate"),
    ("decoded dotdot", ranged("http://h/%2E%2E%2F{1..3}"), "template", "'..'"),
    # links
    ("file:/etc/passwd", single(link="file:/etc/passwd"), "link", "scheme 'file'"),
    ("FILE:///etc/passwd", single(link="FILE:///etc/passwd"), "link", "scheme 'file'"),
    ("backslash authority", single(link="http://169.254.169.254\\@127.0.0.1/x"), "link", "host part"),
    ("backslash host", single(link="http://127.0.0.1\\169.254.169.254/x"), "link", "host part"),
    ("userinfo", single(link="http://user:s3cret@127.0.0.1/x"), "link", "user:password@"),
    ("unclosed IPv6 host", single(link="http://[::1/x"), "link", "malformed: Invalid IPv6 URL"),
    ("space in host", single(link="http://exa mple/x"), "link", "space in its host"),
    ("IDNA refuses the host", single(link="http://bü..cher/x"), "link", "not a valid URL"),
    ("lone surrogate", single(link="http://127.0.0.1/\ud800"), "link", "not a valid URL"),
    ("user only", single(link="https://user@127.0.0.1/x"), "link", "user:password@"),
    ("s3 userinfo", single(link="s3://AKIA:s3cret@bucket/k"), "link", "user:password@"),
    ("multi userinfo", {"type": "multi", "bucket": B, "objects": ["http://u:p@h/x"]}, "objects[0]", "user:password@"),
    # integers out of range
    ("connections 10**30", single(limits={"connections": 10**30}), "limits.connections", "at most"),
    ("connections 2**63", single(limits={"connections": 2**63}), "limits.connections", "at most"),
    ("bytes_per_hour 2**63", single(limits={"bytes_per_hour": 2**63}), "limits.bytes_per_hour", "too large"),
    ("999999999PiB", single(limits={"bytes_per_hour": "999999999PiB"}), "limits.bytes_per_hour", "too large"),
    ('"0.5"', single(limits={"bytes_per_hour": "0.5"}), "limits.bytes_per_hour", "less than one byte"),
    ("number 0.5", single(limits={"bytes_per_hour": 0.5}), "limits.bytes_per_hour", "integer"),
    # timeouts
    ("timeout 1e300", single(timeout=1e300), "timeout", "out of range"),
    ("timeout 10**400", single(timeout=10**400), "timeout", "out of range"),
    ("timeout 99999999999999h", single(timeout="99999999999999h"), "timeout", "out of range"),
    ("timeout 1ns", single(timeout="1ns"), "timeout", "out of range"),
    ("timeout 25h", single(timeout="25h"), "timeout", "out of range"),
    ("progress_interval", single(progress_interval="99999999999999h"), "progress_interval", "out of range"),
    # framing and engine-owned headers
    *[
        (f"header {name}", single(headers={name: "x"}), f"headers.{name}", "set by dlengine")
        for name in ("Host", "Range", "Content-Length", "Transfer-Encoding", "Connection", "TE", "If-None-Match")
    ],
    ("header lower range", single(headers={"range": "bytes=0-1"}), "headers.range", "set by dlengine"),
]


IDS = [case[0] for case in CASES]


@pytest.mark.parametrize(("label", "job", "field", "reason"), CASES, ids=IDS)
def test_refused_naming_the_field(label: str, job: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_job(json.loads(json.dumps(job)))
    assert info.value.field == field, (label, info.value)
    assert reason in str(info.value), (label, info.value)
    assert "s3cret" not in str(info.value)  # a password in a link is never echoed


@pytest.mark.parametrize(
    "job",
    [
        single(timeout="1ms"),
        single(timeout="24h"),
        single(timeout=0),
        single(timeout=""),
        single(limits={"connections": 100_000, "bytes_per_hour": 2**63 - 1}),
        single(limits={"bytes_per_hour": "1.5KiB"}),
        single(headers={"Accept": "*/*", "User-Agent": "x", "X-Custom": "y"}),
        single(link="http://127.0.0.1:8080/x"),
        single(link="127.0.0.1:8080/x"),  # a port, not a scheme
        single(link="hf://gpt2@v1/config.json"),  # a legacy repo id and its revision, not a user
        single(object_name="naïve/日本語 file.bin"),
        ranged("http://h/x{1..12}%41{1..12}"),  # %41 is 'A': a separator
    ],
)
def test_still_accepted(job: dict[str, Any]) -> None:
    parse_job(job)

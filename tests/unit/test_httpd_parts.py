"""The test HTTP server's parts that need no socket: fault validation,
sizes and brace ranges of its command line (the server itself:
tests/integration/test_httpd.py)."""

from __future__ import annotations

import pytest

from harness.httpd import Fault, expand_braces, parse_size


def test_fault_validation() -> None:
    with pytest.raises(ValueError, match="rate"):
        Fault(rate=0)
    with pytest.raises(ValueError, match="reset_after"):
        Fault(reset_after=-1)


def test_parse_size_and_braces() -> None:
    assert parse_size("10KiB") == 10240
    assert parse_size("2MB") == 2_000_000
    assert parse_size("7") == 7
    assert list(expand_braces("/s-{08..10}.tar")) == ["/s-08.tar", "/s-09.tar", "/s-10.tar"]
    assert list(expand_braces("/{1..2}/{a}")) == ["/1/{a}", "/2/{a}"]

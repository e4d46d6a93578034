"""Malformed ranges and links given to ``download`` are refused (exit 2,
naming the problem, nothing created) instead of becoming a literal link that
404s later."""

from __future__ import annotations

import pytest

from tests.conftest import Home


@pytest.mark.parametrize(
    ("src", "needle"),
    [
        ("http://127.0.0.1:9/d/x-{01..5O}.bin", "5O"),
        ("http://127.0.0.1:9/d/x-{1..a}.bin", "{1..a}"),
        ("http://127.0.0.1:9/d/x-{a,b}.bin", "brace range"),
        ("http://127.0.0.1:9/d/x-{1-5}.bin", "brace range"),
        ("http//127.0.0.1:9/d/x.bin", "malformed"),
        ("https:/127.0.0.1:9/d/x.bin", "malformed"),
    ],
)
def test_malformed_src_is_refused(home: Home, src: str, needle: str) -> None:
    res = home.cli("download", src, "ais://abc", "--no-start")
    assert res.returncode == 2, res.stdout + res.stderr
    assert needle in res.stderr
    assert home.cli("show", "--all", "--json").stdout.strip() == "[]"


def test_well_formed_range_still_submits(home: Home) -> None:
    res = home.cli("download", "http://127.0.0.1:9/d/x-{1..3}.bin", "ais://abc", "--no-start", "--json")
    assert res.returncode == 0, res.stderr

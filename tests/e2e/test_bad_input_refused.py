"""The bad inputs of issue 13: refused with exit 2 / HTTP 400 naming the
field, nothing created; control characters printed escaped. The cases
themselves, through the parser: tests/unit/test_bad_input_cases.py."""

from __future__ import annotations

import json

import pytest

from dlengine.cli import output
from tests.conftest import Home
from tests.e2e.test_api import ledger_consistent, start_api
from tests.unit.test_bad_input_cases import CASES, LINK, single


def test_cli_refuses_with_exit_2_and_changes_nothing(home: Home) -> None:
    for label, job, field, reason in CASES[::3]:
        res = home.cli("submit", "-", "--no-start", input=json.dumps(job))
        assert res.returncode == 2, (label, res.stderr)
        assert field in res.stderr and reason in res.stderr and "Traceback" not in res.stderr, (label, res.stderr)
    for args, named in [
        (["download", "file:/etc/passwd", "ais://b"], "scheme 'file'"),
        (["download", LINK, "ais://b", "--max-conns", str(10**30)], "limits.connections"),
        (["download", LINK, "ais://b", "--limit-bph", "999999999PiB"], "--limit-bph"),
        (["download", LINK, "ais://b", "--limit-bph", "0.5"], "--limit-bph"),
        (["download", LINK, "ais://b", "--timeout", "1ns"], "timeout"),
        (["download", LINK, "ais://b", "--timeout", "99999999999999h"], "timeout"),
        (["download", LINK, "ais://b", "--header", "Host: evil.example"], "headers.Host"),
        (["download", "http://169.254.169.254\\@127.0.0.1/x", "ais://b"], "host part"),
    ]:
        res = home.cli(*args, "--no-start")
        assert res.returncode == 2, (args, res.stderr)
        assert named in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
    assert json.loads(home.cli("show", "--all", "--json").stdout) == []
    assert home.visible_files() == []


def test_api_refuses_with_400_and_changes_nothing(home: Home) -> None:
    api = start_api(home)
    assert api.ok("GET") == []
    for label, job, field, _ in CASES:
        res = api.call("POST", body=job)
        assert res.status_code == 400, (label, res.text)
        assert res.json()["field"] == field, (label, res.text)
    assert ledger_consistent(home) == []
    api.session.close()


def test_descriptions_and_names_are_printed_escaped(home: Home, capsys: pytest.CaptureFixture[str]) -> None:
    forged = "real\ndnl-forged  finished  1/1  0  \x1b[2Jforged"
    job = home.submit(single(description=forged))
    res = home.cli("show", "--all")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 2 and job in lines[1], lines  # the header and one row: nothing forged
    assert "real\\ndnl-forged" in lines[1] and "\\x1b[2J" in lines[1] and "\x1b" not in res.stdout
    detail = home.cli("show", job)
    assert "\x1b" not in detail.stdout and "Description: real\\ndnl-forged" in detail.stdout
    assert json.loads(home.cli("show", job, "--json").stdout)["description"] == forged  # JSON keeps it exact
    output.bucket_listing([{"name": "a\rb\u202e", "size": 1}])  # e.g. a name stored by an older version
    assert capsys.readouterr().out.splitlines()[1].startswith("a\\rb\\u202e ")

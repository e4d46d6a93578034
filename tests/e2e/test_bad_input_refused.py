"""The bad inputs of issue 13: refused with exit 2 / HTTP 400 naming the
field, nothing created; control characters printed escaped. The cases
themselves, through the parser: tests/unit/test_bad_input_cases.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from dlengine.cli import output
from tests.conftest import Home, new_home
from tests.e2e.test_api import Api, ledger_consistent, start_api
from tests.unit.test_bad_input_cases import CASES, LINK, single


@pytest.fixture(scope="module")
def untouched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    """One home for every refused command: each test checks that it holds
    no job and no file, so they can share it."""
    home = new_home(tmp_path_factory.mktemp("refused") / "home")
    yield home
    home.stop_all()


@pytest.fixture(scope="module")
def refusing(untouched: Home) -> Iterator[Api]:
    api = start_api(untouched)
    assert api.ok("GET") == []
    yield api
    api.session.close()


def _nothing_created(home: Home) -> None:
    assert not (home.path / "ledger.db").exists() or ledger_consistent(home) == []
    assert home.visible_files() == []


CLI_CASES = CASES[::3]
DOWNLOAD_CASES = [
    (["download", "file:/etc/passwd", "ais://b"], "scheme 'file'"),
    (["download", LINK, "ais://b", "--max-conns", str(10**30)], "--max-conns"),
    (["download", LINK, "ais://b", "--limit-bph", "999999999PiB"], "--limit-bph"),
    (["download", LINK, "ais://b", "--limit-bph", "0.5"], "--limit-bph"),
    (["download", LINK, "ais://b", "--timeout", "1ns"], "timeout"),
    (["download", LINK, "ais://b", "--timeout", "99999999999999h"], "timeout"),
    (["download", LINK, "ais://b", "--header", "Host: evil.example"], "headers.Host"),
    (["download", "http://169.254.169.254\\@127.0.0.1/x", "ais://b"], "host part"),
    (["download", "http://[::1/x-{1..3}", "ais://b"], "template: link 'http://[::1/x-{1..3}' is malformed"),
    (["download", "http://exa mple/x", "ais://b"], "space in its host"),
]


@pytest.mark.parametrize(("label", "job", "field", "reason"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_refuses_with_exit_2_and_changes_nothing(
    untouched: Home, label: str, job: dict[str, Any], field: str, reason: str
) -> None:
    res = untouched.cli("submit", "-", "--no-start", input=json.dumps(job))
    assert res.returncode == 2, (label, res.stderr)
    assert field in res.stderr and reason in res.stderr and "Traceback" not in res.stderr, (label, res.stderr)
    _nothing_created(untouched)


@pytest.mark.parametrize(("args", "named"), DOWNLOAD_CASES, ids=[" ".join(c[0][1:]) for c in DOWNLOAD_CASES])
def test_cli_download_refuses_with_exit_2_and_changes_nothing(untouched: Home, args: list[str], named: str) -> None:
    res = untouched.cli(*args, "--no-start")
    assert res.returncode == 2, (args, res.stderr)
    assert named in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
    _nothing_created(untouched)


@pytest.mark.parametrize(("label", "job", "field", "reason"), CASES, ids=[c[0] for c in CASES])
def test_api_refuses_with_400_and_changes_nothing(
    refusing: Api, untouched: Home, label: str, job: dict[str, Any], field: str, reason: str
) -> None:
    res = refusing.call("POST", body=job)
    assert res.status_code == 400, (label, res.text)
    assert res.json()["field"] == field, (label, res.text)
    _nothing_created(untouched)


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

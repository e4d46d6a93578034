"""The command line's parser built for the command named first (only its
arguments: issue 12's start-up cost) parses, helps and refuses exactly as
the parser of every command does."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from dlengine.cli.parser import build_parser

ARGVS = [
    ["submit", "job.json"],
    ["submit", "-", "--wait", "--progress-interval", "500ms", "--json"],
    ["download", "http://h/x", "ais://b", "--wait"],
    ["download", "http://h/f-{1..3}", "ais://b/sub/", "--max-conns", "4", "--header", "A: b", "--dry-run"],
    ["download", "--hf-dataset", "org/name", "ais://b", "--hf-include", "*.json"],
    ["download", "http://h/a", "http://h/b", "ais://b"],  # (an unquoted range the shell expanded)
    ["show"],
    ["show", "abc", "-v", "--refresh", "1s"],
    ["abort", "--all"],
    ["stop", "abc"],
    ["rm", "--regex", "x.*"],
    ["retry", "abc", "--no-start"],
    ["wait", "abc", "--progress"],
    ["run"],
    ["run", "--linger", "2", "--quiet", "--executor", "local"],
    ["serve", "--listen", "127.0.0.1:0"],
    ["ls"],
    ["ls", "ais://b", "-l", "--json"],
    ["bucket", "create", "ais://a", "ais://b"],
    ["bucket", "ls", "--json"],
    ["bucket", "rm", "ais://a"],
    ["--version"],
    [],
]


def _outcome(argv: list[str], parser: argparse.ArgumentParser) -> tuple[object, str, str]:
    """(the namespace or the exit code, stdout, stderr) of one parse."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            result: object = vars(parser.parse_args(argv))
        except SystemExit as exc:
            result = exc.code
    return result, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("argv", ARGVS, ids=" ".join)
def test_the_parser_of_one_command_parses_as_the_whole_one(argv: list[str]) -> None:
    assert _outcome(argv, build_parser(argv)) == _outcome(argv, build_parser())


BAD = [
    ["download"],  # no DST
    ["download", "http://h/x", "ais://b", "--max-conns", "many"],
    ["run", "--linger", "nan"],
    ["show", "--refresh", "1y"],
    ["bucket"],
    ["bucket", "mv"],
    ["retry"],
    ["run", "--version"],
    ["nosuch", "x"],
    ["--nosuch"],
]


@pytest.mark.parametrize("argv", BAD, ids=" ".join)
def test_bad_arguments_are_refused_as_by_the_whole_parser(argv: list[str]) -> None:
    lazy = _outcome(argv, build_parser(argv))
    assert lazy[0] == 2 and lazy[2]  # (the control: refused, with a message)
    assert lazy == _outcome(argv, build_parser())


HELP = [["--help"], ["download", "--help"], ["stop", "-h"], ["bucket", "rm", "--help"], ["run", "--help"]]


@pytest.mark.parametrize("argv", HELP, ids=" ".join)
def test_help_is_the_same(argv: list[str]) -> None:
    lazy = _outcome(argv, build_parser(argv))
    assert lazy[0] == 0 and "usage: dlengine" in lazy[1]
    assert lazy == _outcome(argv, build_parser())


def test_only_the_named_command_gets_its_parser() -> None:
    """(what makes it cheaper: the control of the tests above)"""

    def commands(parser: argparse.ArgumentParser) -> set[str]:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return set(sub.choices)

    assert commands(build_parser(["download", "http://h/x", "ais://b"])) == {"download"}
    assert commands(build_parser(["stop", "x"])) == {"abort", "stop"}
    every = commands(build_parser())
    assert {"submit", "download", "run", "serve", "bucket", "stop"} <= every
    assert commands(build_parser(["--help"])) == every == commands(build_parser(["nosuch"]))


@pytest.mark.parametrize("value", [None, "", "0", "-3", "x", "57", "200"])
def test_the_help_width_is_shutils(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    """``columns`` (argparse's width, without importing shutil) is what
    ``shutil.get_terminal_size`` says, for every ``COLUMNS``."""
    import shutil

    from dlengine.cli.parser import columns

    if value is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", value)
    assert columns() == shutil.get_terminal_size().columns


def test_help_is_wrapped_to_the_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "50")
    _, narrow, _ = _outcome(["download", "--help"], build_parser(["download"]))
    monkeypatch.setenv("COLUMNS", "160")
    _, wide, _ = _outcome(["download", "--help"], build_parser(["download"]))
    assert len(narrow.splitlines()[0]) <= 48 < len(wide.splitlines()[0])  # the usage line (argparse's margin of 2)

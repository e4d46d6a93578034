"""Bad settings (environment, config.json, flags) are refused on load with
exit 2 naming the variable or file, instead of hanging or an internal error."""

from __future__ import annotations

import json
import os
import stat

import pytest

from tests.conftest import Home


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DLENGINE_THREADS", "0"),
        ("DLENGINE_THREADS", "-3"),
        ("DLENGINE_THREADS", "2.5"),
        ("DLENGINE_WORKERS", "many"),
        ("DLENGINE_TIMEOUT", "nan"),
        ("DLENGINE_TIMEOUT", "1e300"),
        ("DLENGINE_LINGER", "inf"),
        ("DLENGINE_ATTEMPTS", "0"),
        ("DLENGINE_CHUNK", "1"),
        ("DLENGINE_SYNC", "sometimes"),
        ("DLENGINE_SEGMENT_THRESHOLD", "1000"),
        ("DLENGINE_INLINE", "-1"),
    ],
)
def test_bad_environment_variable_is_exit_2_naming_it(home: Home, variable: str, value: str) -> None:
    home.env[variable] = value
    res = home.cli("run", timeout=30)
    assert res.returncode == 2, res.stderr
    assert variable in res.stderr
    assert not (home.path / "ledger.db").exists()  # nothing created


@pytest.mark.parametrize("linger", ["nan", "inf", "-1", "soon"])
def test_run_linger_must_be_finite(home: Home, linger: str) -> None:
    res = home.cli("run", "--linger", linger, timeout=30)
    assert res.returncode == 2
    assert "--linger" in res.stderr


def test_home_that_cannot_be_created_is_exit_2_naming_it(home: Home) -> None:
    home.env["DLENGINE_HOME"] = "/proc/dlengine-cannot-exist"
    res = home.cli("run", timeout=30)  # (a command that makes the home: `show` reads none as empty)
    assert res.returncode == 2, res.stderr
    assert "DLENGINE_HOME" in res.stderr and "internal error" not in res.stderr


@pytest.mark.parametrize("command", ["show", "run"])
def test_home_that_is_a_file_is_exit_2_saying_so(home: Home, command: str) -> None:
    home.path.mkdir(parents=True, exist_ok=True)
    (home.path / "file").write_text("x")
    home.env["DLENGINE_HOME"] = str(home.path / "file")
    res = home.cli(command, timeout=30)
    assert res.returncode == 2, res.stderr  # run: was exit 3, "dlengine: .../file: File exists"
    assert res.stderr == f"dlengine: error: DLENGINE_HOME: {home.path / 'file'} is a file, not a directory\n"


def test_created_home_is_private(home: Home) -> None:
    home.env["DLENGINE_HOME"] = str(home.path / "fresh")
    assert home.cli("run", timeout=30).returncode == 0
    assert stat.S_IMODE(os.stat(home.path / "fresh").st_mode) == 0o700  # the lock was first: was 0o755


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (("show",), 0),
        (("show", "--all", "--json"), 0),
        (("ls",), 0),
        (("abort", "--all"), 0),
        (("show", "dnl-nope"), 2),
        (("wait", "dnl-nope"), 2),
        (("abort", "dnl-nope"), 2),
        (("rm", "dnl-nope"), 2),
        (("retry", "dnl-nope"), 2),
    ],
)
def test_commands_that_read_create_no_home(home: Home, command: tuple[str, ...], code: int) -> None:
    """A mistyped DLENGINE_HOME: read as an empty home, with a note naming
    it, and nothing created (was: a new home and ledger made there)."""
    home.env["DLENGINE_HOME"] = str(home.path / "mistyped")
    res = home.cli(*command, timeout=30)
    assert res.returncode == code, res.stderr
    assert f"{home.path / 'mistyped'} has no ledger (DLENGINE_HOME)" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert not (home.path / "mistyped").exists()


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"mountpaths": "/srv/disk1"}, "mountpaths"),
        ({"mountpaths": [1, 2]}, "mountpaths"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"threads": 4}, "unknown setting"),
    ],
)
def test_bad_config_file_is_exit_2_naming_the_file(home: Home, config: dict[str, object], needle: str) -> None:
    home.path.mkdir(parents=True, exist_ok=True)
    (home.path / "config.json").write_text(json.dumps(config))
    res = home.cli("show", timeout=30)
    assert res.returncode == 2, res.stderr
    assert "config.json" in res.stderr and needle in res.stderr


def test_config_file_that_is_not_json(home: Home) -> None:
    home.path.mkdir(parents=True, exist_ok=True)
    (home.path / "config.json").write_text("{threads: 4")
    res = home.cli("show", timeout=30)
    assert res.returncode == 2 and "config.json" in res.stderr

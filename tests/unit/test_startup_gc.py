"""The collector while a command starts (``dlengine/startup.py``): no
collection before the command has started, the interpreter's thresholds
after, what start-up made frozen; nothing at all for callers in-process."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

from dlengine import startup
from tests.unit.test_start_imports import ROOT, _site_path

# the command as the program runs it (cli.entry without its exit); prints what the collector did
_PROBE = """
import gc, json, sys
default = gc.get_threshold()
from dlengine import startup
collected = []
gc.callbacks.append(lambda phase, info: phase == "start" and startup.starting() and collected.append(info))
startup.begin()
from dlengine.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "default": default, "threshold": gc.get_threshold(),
                  "frozen": gc.get_freeze_count(), "starting": startup.starting(), "collected": len(collected)}))
"""


def probe(tmp_path: Path, *argv: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLENGINE_")}
    env.update(DLENGINE_HOME=str(tmp_path / "home"), PYTHONPATH=_site_path())
    out = subprocess.run(
        [sys.executable, "-S", "-c", _PROBE, *argv], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    got: dict[str, object] = json.loads(out.stdout.splitlines()[-1])
    assert got["code"] == 0, out.stderr
    return got


def test_done_without_begin_is_nothing() -> None:
    """In-process (the tests, the Python API): the caller's collector is
    left alone, nothing of its is frozen."""
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    startup.done()
    assert not startup.starting()
    assert (gc.get_threshold(), gc.get_freeze_count()) == (threshold, frozen)


def test_begin_then_done_restores_the_thresholds_and_freezes() -> None:
    code = (
        "import gc\nfrom dlengine import startup\ndefault = gc.get_threshold()\nstartup.begin()\nstartup.begin()\n"
        "assert gc.get_threshold() == (startup.START_THRESHOLD, *default[1:]) and startup.starting()\n"
        "startup.done()\nfrozen = gc.get_freeze_count()\nstartup.done()\n"
        "assert gc.get_threshold() == default and frozen > 0 and gc.get_freeze_count() == frozen\n"
        "assert not startup.starting()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True)
    assert out.returncode == 0, out.stderr.decode()


def test_run_collects_nothing_while_it_starts_and_as_usual_after(tmp_path: Path) -> None:
    got = probe(tmp_path, "run", "--quiet")
    assert got["collected"] == 0
    assert got["threshold"] == got["default"] and not got["starting"]
    assert isinstance(got["frozen"], int) and got["frozen"] > 0


def test_the_program_begins_with_the_start_up_collector() -> None:
    code = (
        "from dlengine import cli, startup\n"
        "cli.main = lambda argv=None: print(startup.starting()) or 0\n"  # (the command: whether it starts so)
        "cli.entry()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().split() == ["True"]


def test_the_package_imports_nothing_before_the_program_sets_the_collector() -> None:
    """``import dlengine.cli`` (what the program's entry runs first) makes
    almost nothing for the collector to walk: no typing, no enum, not the
    errors, which come with the first use of ``dlengine.SpecError``."""
    code = (
        "import sys\nimport dlengine.cli\nbefore = sorted(sys.modules)\n"
        "import dlengine\nerror = dlengine.SpecError\n"
        "import json\nprint(json.dumps([before, error.__module__]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code],
        env={**os.environ, "PYTHONPATH": _site_path()},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    before, module = json.loads(out.stdout)
    assert module == "dlengine.errors"
    assert sorted({"typing", "enum", "re", "dlengine.errors"} & set(before)) == []


def test_a_fresh_worker_begins_with_the_start_up_collector() -> None:
    """The pool's command line of a fresh worker (``worker_main`` calls
    ``done`` before the worker runs; a spare's came with its fork)."""
    from dlengine.supervisor import pool

    assert pool._ENTRY.startswith("from dlengine import startup; startup.begin();")

"""A job is never left waiting in silence for a mountpath its supervisor
does not serve (issue 11): objects placed on a mountpath outside the
supervisor's DLENGINE_MOUNTPATHS are served there, or fail with a reason
naming it; relative mountpaths are stored absolute."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from harness.httpd import TestHTTPServer
from tests.conftest import Home


def _with_mountpaths(home: Home, *paths: Path | str) -> Home:
    env = dict(home.env, DLENGINE_MOUNTPATHS=":".join(str(p) for p in paths))
    return Home(home.path, env, home.procs)


def test_objects_on_another_mountpath_are_served(home: Home, httpd: TestHTTPServer, tmp_path: Path) -> None:
    httpd.put("/d/a.bin", b"alpha" * 100)
    submitter = _with_mountpaths(home, tmp_path / "mp-a")
    job_id = submitter.submit({"type": "single", "bucket": {"name": "abc"}, "link": f"{httpd.url}/d/a.bin"})
    res = _with_mountpaths(home, tmp_path / "mp-b").run(timeout=60)  # used to wait forever
    assert res.returncode == 0, res.stderr
    assert str(tmp_path / "mp-a") in res.stderr  # says which mountpath it serves besides its own
    assert (tmp_path / "mp-a" / "ais" / "abc" / "a.bin").read_bytes() == b"alpha" * 100
    assert home.status(job_id)["finished_cnt"] == 1


def test_objects_on_a_missing_mountpath_fail_naming_it(home: Home, httpd: TestHTTPServer, tmp_path: Path) -> None:
    httpd.put("/d/a.bin", b"alpha")
    gone = tmp_path / "unmounted"
    job_id = _with_mountpaths(home, gone).submit(
        {"type": "multi", "bucket": {"name": "abc"}, "objects": [f"{httpd.url}/d/a.bin"]}
    )
    shutil.rmtree(gone)  # the disk went away before the supervisor started
    res = _with_mountpaths(home, tmp_path / "other").run(timeout=60)
    assert res.returncode == 1, res.stderr
    assert str(gone) in res.stderr
    status = home.status(job_id)
    assert status["state"] == "finished" and status["error_cnt"] == 1
    (error,) = status["download_errors"]
    assert str(gone) in error["error"] and error["code"] == "mountpath"
    assert not gone.exists()  # not created on the disk beneath


def test_relative_mountpath_is_stored_absolute(home: Home, httpd: TestHTTPServer, tmp_path: Path) -> None:
    httpd.put("/d/r.bin", b"relative")
    cwd = tmp_path / "submitted-here"
    cwd.mkdir()
    env = dict(home.env, DLENGINE_MOUNTPATHS="rel-mp")
    job = {"type": "single", "bucket": {"name": "abc"}, "link": f"{httpd.url}/d/r.bin"}
    sub = subprocess.run(
        [sys.executable, "-m", "dlengine", "submit", "-", "--no-start"],
        env=env, cwd=cwd, input=json.dumps(job), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert sub.returncode == 0, sub.stderr
    elsewhere = tmp_path / "run-here"  # cron's working directory is not the submitter's
    elsewhere.mkdir()
    res = subprocess.run(
        [sys.executable, "-m", "dlengine", "run"], env=env, cwd=elsewhere, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    assert (cwd / "rel-mp" / "ais" / "abc" / "r.bin").read_bytes() == b"relative"
    assert not (elsewhere / "rel-mp" / "ais").exists()


def test_config_file_mountpaths_are_relative_to_the_home(home: Home) -> None:
    home.path.mkdir(parents=True)
    (home.path / "config.json").write_text(json.dumps({"mountpaths": ["disk1"]}))
    code = "from dlengine.config import load_settings; print(load_settings().mountpaths[0])"
    res = subprocess.run([sys.executable, "-c", code], env=home.env, cwd="/", capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(home.path / "disk1")

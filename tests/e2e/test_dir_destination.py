"""A local directory as the destination (issue 11): ``download SRC ./dir/``
or ``{"bucket": {"name": "/srv/ds", "provider": "dir"}}`` stores the objects
in that directory, with a bucket's guarantees (work files beside them,
names that cannot escape, skip on re-run, ``ls``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from harness.httpd import TestHTTPServer
from tests.conftest import Home


def _cli(home: Home, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dlengine", *args], env=home.env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def _shards(httpd: TestHTTPServer, count: int) -> dict[str, bytes]:
    data = {}
    for i in range(1, count + 1):
        body = os.urandom(30_000 + i)
        httpd.put(f"/ds/part-{i}.bin", body)
        data[f"part-{i}.bin"] = body
    return data


def test_range_into_a_relative_directory(home: Home, httpd: TestHTTPServer, tmp_path: Path) -> None:
    data = _shards(httpd, 4)
    src = f"{httpd.url}/ds/part-{{1..4}}.bin"
    res = _cli(home, tmp_path, "download", src, "./out/", "--wait")
    assert res.returncode == 0, res.stderr
    out = tmp_path / "out"
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and not p.name.startswith(".")} == data
    assert list((out / ".work").iterdir()) == []  # work files beside the objects, gone once done
    assert not (home.path / "data" / "ais").exists()  # nothing went into the home's mountpath

    listed = json.loads(_cli(home, tmp_path, "ls", "./out", "--json").stdout)
    assert {e["name"]: e["size"] for e in listed} == {k: len(v) for k, v in data.items()}

    again = _cli(home, tmp_path, "download", src, f"dir://{out}", "--wait", "--json")  # the same bucket
    assert again.returncode == 0, again.stderr
    status = json.loads(again.stdout.strip().splitlines()[-1])
    assert status["skipped_cnt"] == 4  # unchanged files are not fetched again
    assert status["bucket"] == {"name": str(out), "provider": "dir", "namespace": ""}


def test_job_file_with_a_dir_bucket(home: Home, httpd: TestHTTPServer, tmp_path: Path) -> None:
    httpd.put("/ds/one.bin", b"one")
    target = tmp_path / "srv" / "ds"
    job = {
        "type": "multi",
        "bucket": {"name": str(target), "provider": "dir"},
        "objects": {"sub/one.bin": f"{httpd.url}/ds/one.bin"},
    }
    home.submit(job)
    assert home.run().returncode == 0
    assert (target / "sub" / "one.bin").read_bytes() == b"one"


def test_relative_dir_bucket_in_a_job_file_is_refused(home: Home, tmp_path: Path) -> None:
    job = {"type": "single", "bucket": {"name": "srv/ds", "provider": "dir"}, "link": "http://127.0.0.1:9/x"}
    res = home.cli("submit", "-", "--no-start", input=json.dumps(job))
    assert res.returncode == 2 and "bucket.name" in res.stderr and "absolute" in res.stderr


def test_directory_overlapping_the_home_is_refused(home: Home, tmp_path: Path) -> None:
    for dst in (str(home.path / "inside"), str(home.path.parent)):
        res = home.cli("download", "http://127.0.0.1:9/x.bin", dst, "--no-start")
        assert res.returncode == 2, res.stderr
        assert "overlaps" in res.stderr
    assert home.cli("show", "--all", "--json").stdout.strip() == "[]"
    assert not (home.path / "inside").exists()


def test_object_names_cannot_reach_the_work_files(home: Home, httpd: TestHTTPServer, tmp_path: Path) -> None:
    httpd.put("/ds/evil.bin", b"evil")
    target = tmp_path / "ds"
    job = {
        "type": "multi",
        "bucket": {"name": str(target), "provider": "dir"},
        "objects": {".work/1.part": f"{httpd.url}/ds/evil.bin", ".dlengine-home": f"{httpd.url}/ds/evil.bin"},
    }
    job_id = home.submit(job)
    assert home.run().returncode == 1
    status = home.status(job_id)
    assert status["error_cnt"] == 2
    assert all("reserved" in e["error"] for e in status["download_errors"])
    assert b"evil" not in (target / ".dlengine-home").read_bytes()
    assert list((target / ".work").iterdir()) == []


def test_the_http_api_refuses_a_directory_destination(home: Home, tmp_path: Path) -> None:
    """A client of `serve` must not choose where on this machine files go
    (~/.ssh/authorized_keys would be one job away)."""
    from tests.e2e.test_api import start_api

    api = start_api(home)
    try:
        job = {"type": "single", "bucket": {"name": str(tmp_path / "x"), "provider": "dir"}, "link": "http://h/a"}
        res = api.call("POST", body=job)
        assert res.status_code == 400, res.text
        assert "command line only" in res.json()["error"]
        assert not (tmp_path / "x").exists()
    finally:
        api.session.close()


def test_a_file_as_the_directory_is_refused_by_dry_run_too(home: Home, tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("mine")
    for where in (tmp_path / "file.txt", tmp_path / "file.txt" / "sub"):
        for extra in ("--dry-run", "--no-start"):  # --dry-run said where it would store, a file
            res = home.cli("download", "http://127.0.0.1:9/x.bin", f"{where}/", extra)
            assert res.returncode == 2, (where, extra, res.stdout)
            assert f"cannot use {where} as a directory: {tmp_path / 'file.txt'} is not a directory" in res.stderr
    assert (tmp_path / "file.txt").read_text() == "mine"
    assert not (home.path / "ledger.db").exists() or home.cli("show", "--all", "--json").stdout.strip() == "[]"

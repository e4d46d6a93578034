"""Disk full (ENOSPC) on a real, small tmpfs mountpath."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.httpd import TestHTTPServer
from tests.conftest import Home, counters_match_rows, tmpfs

DISK = 2 << 20


@pytest.fixture
def small_disk(home: Home, tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs as the home's only mountpath."""
    with tmpfs(tmp_path / "small", DISK) as path:
        home.env["DLENGINE_MOUNTPATHS"] = str(path)
        try:
            yield path
        finally:
            home.stop_all()  # nothing may hold the mount


def test_disk_full_fails_the_object_cleanly_and_stops_the_job(
    home: Home, httpd: TestHTTPServer, small_disk: Path
) -> None:
    home.env["DLENGINE_THREADS"] = "1"  # one object at a time: the big one first
    httpd.put_generated("/full/big.bin", 3 * DISK, seed=3)
    for i in range(3):
        httpd.put(f"/full/small{i}.bin", b"x" * 1000)
    objects = {"big.bin": f"{httpd.url}/full/big.bin"} | {f"s{i}": f"{httpd.url}/full/small{i}.bin" for i in range(3)}
    job_id = home.submit({"type": "multi", "bucket": {"name": "full"}, "objects": objects})

    assert home.run(timeout=60).returncode == 1
    status = home.status(job_id)
    assert status["state"] == "aborted" and "no space" in (status["error"] or ""), status["error"]
    (error,) = status["download_errors"]
    assert error["name"] == "big.bin" and "no space" in error["error"]
    assert (status["finished_cnt"], status["aborted_cnt"]) == (0, 3)  # the job stopped
    assert [r.path for r in httpd.requests] == ["/full/big.bin"]
    assert home.work_files() == []
    assert home.visible_files() == []
    assert shutil.disk_usage(small_disk).used < 64 << 10  # the partial bytes are gone
    counters_match_rows(home.ledger(), job_id)

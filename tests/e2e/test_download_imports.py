"""What ``download URL ais://b --wait`` of one small object imports (issue
12: start-up <= 0.1 s of fixed cost): the data path, downloaded in the
command, and nothing of the supervisor or the SDK sources; checked in a
fresh interpreter (``tests/unit/test_start_imports.py``)."""

from __future__ import annotations

from pathlib import Path

from harness.httpd import TestHTTPServer
from tests.unit.test_start_imports import _modules
from tests.unit.test_startup_gc import probe


def test_download_wait_of_one_object_imports_neither_supervisor_nor_sdk(tmp_path: Path, httpd: TestHTTPServer) -> None:
    httpd.put("/imports/a.bin", b"a" * 10240)
    loaded = _modules(tmp_path, "download", f"{httpd.url}/imports/a.bin", "ais://b", "--wait")
    assert "dlengine.supervisor.worker" in loaded  # (the control: downloaded in the command)
    assert (tmp_path / "home" / "data" / "ais" / "b" / "a.bin").stat().st_size == 10240
    unwanted = {
        "subprocess",  # no background supervisor started
        "dlengine.supervisor.supervisor",
        "dlengine.supervisor.pool",
        "dlengine.supervisor.dispatch",
        "dlengine.sources.registry",  # the SDK sources' table
        "dlengine.sources.http",
        "urllib3",
        "boto3",
        "random",  # the retry's jitter, at the first retry (here a site hook may import it first)
        "base64",  # a checksum header's: at the first answer with one
        "ctypes",  # syncfs's: at the first batch of more than a few files
        "shutil",  # (and bz2, lzma, ~4 ms): argparse's width from cli.parser.columns, layout's rmtree at use
        "bz2",
        "lzma",
    }
    assert sorted(unwanted & loaded) == []


def test_download_wait_collects_nothing_while_it_starts(tmp_path: Path, httpd: TestHTTPServer) -> None:
    """The collector (``dlengine/startup.py``): not run while the command
    imports its modules, as usual once it follows the job."""
    httpd.put("/imports/gc.bin", b"g" * 10240)
    got = probe(tmp_path, "download", f"{httpd.url}/imports/gc.bin", "ais://b", "--wait")
    assert (tmp_path / "home" / "data" / "ais" / "b" / "gc.bin").stat().st_size == 10240
    assert got["collected"] == 0
    assert got["threshold"] == got["default"] and not got["starting"]

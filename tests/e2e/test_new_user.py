"""What a new user (used to rclone, aria2c, huggingface_hub and AIStore's
CLI) ran into on a first afternoon with dlengine: commands that did more
than they said, or errors that named the wrong thing."""

from __future__ import annotations

import json
from pathlib import Path

from harness.httpd import TestHTTPServer
from tests.conftest import Home, tmpfs


def test_bucket_rm_of_a_path_inside_a_bucket_removes_nothing(home: Home, httpd: TestHTTPServer) -> None:
    # `rclone purge remote:bkt/sub` removes sub only; `bucket rm ais://abc/sub`
    # used to delete every object of ais://abc and say "removed ais://abc/sub"
    httpd.put("/n/keep.bin", b"keep")
    httpd.put("/n/sub.bin", b"sub")
    assert home.cli("download", f"{httpd.url}/n/keep.bin", "ais://abc", "--wait").returncode == 0
    assert home.cli("download", f"{httpd.url}/n/sub.bin", "ais://abc/sub/", "--wait").returncode == 0
    for action in ("rm", "create"):
        res = home.cli("bucket", action, "ais://abc/sub")
        assert res.returncode == 2, res
        assert "ais://abc/sub" in res.stderr and "ais://abc" in res.stderr.replace("ais://abc/sub", "")
    assert home.ls("ais://abc") == {"keep.bin": 4, "sub/sub.bin": 3}
    assert home.cli("bucket", "rm", "ais://abc/").returncode == 0  # a trailing '/' still names the bucket
    assert home.cli("ls", "ais://abc").returncode == 2


def test_job_files_not_in_utf8(home: Home, tmp_path: Path) -> None:
    # PowerShell 5's `Out-File` writes UTF-16 with a BOM; a stray byte is bad
    # input to name, not an "internal error" (exit 3)
    job = {"type": "single", "bucket": {"name": "abc"}, "link": "http://127.0.0.1:9/a.bin"}
    utf16 = tmp_path / "job16.json"
    utf16.write_text(json.dumps(job), encoding="utf-16")
    res = home.cli("submit", str(utf16), "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "a.bin  <- http://127.0.0.1:9/a.bin" in res.stdout
    broken = tmp_path / "broken.json"
    broken.write_bytes(json.dumps(job).encode().replace(b"a.bin", b"a\xff.bin"))
    res = home.cli("submit", str(broken), "--dry-run")
    assert res.returncode == 2 and "UTF-8" in res.stderr and "internal error" not in res.stderr, res.stderr
    listing = tmp_path / "names.txt"
    listing.write_bytes(b"a.bin\nb\xff.bin\n")
    res = home.cli("download", "http://127.0.0.1:9/d", "ais://abc", "--object-list", str(listing), "--dry-run")
    assert res.returncode == 2 and "--object-list" in res.stderr and "UTF-8" in res.stderr, res.stderr


def test_a_directory_destination_that_cannot_be_one_is_named(home: Home, tmp_path: Path) -> None:
    # DST a file (curl -o habits: `download URL ./x.tar`), or a directory this
    # user cannot write: the error named DLENGINE_MOUNTPATHS, which the user never set
    existing = tmp_path / "x.tar"
    existing.write_text("mine")
    res = home.cli("download", "http://127.0.0.1:9/x.tar", str(existing), "--no-start")
    assert res.returncode == 2, res
    assert "DLENGINE_MOUNTPATHS" not in res.stderr and f"{existing}" in res.stderr and "not a directory" in res.stderr
    assert existing.read_text() == "mine"
    res = home.cli("download", "http://127.0.0.1:9/x.tar", f"{existing}/sub/", "--no-start")
    assert res.returncode == 2 and "DLENGINE_MOUNTPATHS" not in res.stderr and str(existing) in res.stderr, res
    with tmpfs(tmp_path / "ro", 1 << 20, "ro") as readonly:
        res = home.cli("download", "http://127.0.0.1:9/x.tar", f"{readonly}/data/", "--no-start")
    assert res.returncode == 2 and "DLENGINE_MOUNTPATHS" not in res.stderr and "Read-only file system" in res.stderr
    assert f"{readonly}/data" in res.stderr, res.stderr


def test_a_home_that_cannot_be_written_says_why(home: Home, tmp_path: Path) -> None:
    # a container image with the home made beforehand on a read-only root
    with tmpfs(tmp_path / "ro", 1 << 20, "ro") as readonly:
        home.env["DLENGINE_HOME"] = str(readonly)
        shown = home.cli("show")  # (reads it as an empty home: nothing to write)
        submitted = home.cli("download", "http://127.0.0.1:9/t/x.tar", "ais://abc", "--no-start")
        ran = home.cli("run")
    assert shown.returncode == 0 and "has no ledger" in shown.stderr, shown
    assert submitted.returncode == 2, submitted
    assert "Read-only file system" in submitted.stderr and str(readonly) in submitted.stderr, submitted.stderr
    assert ran.returncode == 3 and "Read-only file system" in ran.stderr, ran.stderr
    assert "Errno" not in ran.stderr and len(ran.stderr.splitlines()) == 1, ran.stderr


def test_a_backend_job_that_could_not_list_ends_with_no_minus_one(home: Home) -> None:
    # its total is AIStore's -1 until listed: "0/-1 objects stored" read as a bug
    job = {"type": "backend", "bucket": {"name": "org/gone", "provider": "hf"}}  # HF_ENDPOINT: a closed port
    res = home.cli("submit", "-", "--wait", input=json.dumps(job))
    assert res.returncode == 1, res
    assert "0/? objects stored" in res.stderr and "/-1" not in res.stderr, res.stderr


def test_submitting_what_an_active_job_already_does_says_so(home: Home) -> None:
    # Ctrl-C of `download --wait`, then the same command again (as with
    # aria2c -c or wget -c): a second job fetching every object a second time
    src = "http://127.0.0.1:9/t/shard-{1..3}.tar"
    first = home.cli("download", src, "ais://abc", "--no-start")
    assert first.returncode == 0 and "still active" not in first.stderr, first
    first_id = first.stdout.strip()
    again = home.cli("download", src, "ais://abc", "--no-start")
    assert again.returncode == 0, again
    assert f"{first_id} (still active)" in again.stderr and f"dlengine wait {first_id}" in again.stderr
    assert again.stdout.strip() != first_id  # submitted all the same, as AIStore does: only a note
    other = home.cli("download", src, "ais://other", "--no-start")
    assert "still active" not in other.stderr, other.stderr


def test_wait_json_prints_what_show_json_prints(home: Home, httpd: TestHTTPServer) -> None:
    httpd.put("/j/a.bin", b"alpha")
    res = home.cli("download", f"{httpd.url}/j/a.bin", "ais://abc", "--wait", "--json")
    assert res.returncode == 0, res.stderr
    waited = json.loads(res.stdout)
    assert sorted(waited) == sorted(home.show_json(waited["id"]))  # no "spec" in one only

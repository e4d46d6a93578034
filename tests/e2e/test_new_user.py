"""What a new user (used to rclone, aria2c, huggingface_hub and AIStore's
CLI) ran into on a first afternoon with dlengine: commands that did more
than they said, or errors that named the wrong thing."""

from __future__ import annotations

from harness.httpd import TestHTTPServer
from tests.conftest import Home


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

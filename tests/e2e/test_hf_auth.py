"""``download --hf-auth TOKEN`` (AIStore's flag): a private repo with a
token given on the command line instead of HF_TOKEN. The token lists the
repo at submission, goes with the job in its 0600 secrets file (never the
ledger, a log or a status) and to the Hub's origin only, not the CDN."""

from __future__ import annotations

import stat

from harness.fakehub import TOKEN, FakeHub
from harness.httpd import TestHTTPServer
from tests.conftest import Home
from tests.e2e.test_hf import dataset_files, hub_page_size, stored  # noqa: F401 - hub_page_size: test_hf's Hub


def test_hf_auth_reaches_a_private_repo_and_stays_secret(hhome: Home, hub: FakeHub, cdn: TestHTTPServer) -> None:
    files = dataset_files()
    hub.add_repo("org/authed", files, private=True)
    res = hhome.cli("download", "--hf-dataset", "org/authed", "ais://authed", "--hf-auth", TOKEN, "--wait")
    assert res.returncode == 0, res.stderr
    assert stored(hhome, "ais", "authed") == files
    assert all(r.header("Authorization") == f"Bearer {TOKEN}" for r in hub.requests("org/authed"))
    lfs = [r for r in cdn.requests if r.path.startswith("/lfs/")]
    assert lfs and not any("Authorization" in r.headers for r in lfs)  # never to the CDN's origin
    job_id = res.stdout.split()[-1]
    shown = hhome.cli("show", job_id, "--json")
    assert TOKEN not in res.stdout + res.stderr + shown.stdout
    for path in hhome.path.rglob("*"):
        if not path.is_file() or "data" in path.relative_to(hhome.path).parts:
            continue
        if "secrets" in path.relative_to(hhome.path).parts:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600  # where the job's secret headers live
            continue
        assert TOKEN.encode() not in path.read_bytes(), path  # ledger, its WAL, the supervisor's log

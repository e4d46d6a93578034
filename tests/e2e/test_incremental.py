"""Re-submitting a finished job: unchanged objects cost a 304 and no body,
changed ones are downloaded again; both are counted."""

from __future__ import annotations

import os

from harness.httpd import TestHTTPServer
from tests.conftest import Home, counters_match_rows

NAMES = ("a.bin", "b.bin", "c.bin", "d.bin")


def _catalog_etag(home: Home, name: str) -> str:
    row = home.ledger().execute("SELECT etag FROM catalog WHERE bucket = 'inc' AND name = ?", (name,)).fetchone()
    return str(row[0])


def test_rerun_fetches_only_what_changed(home: Home, httpd: TestHTTPServer) -> None:
    for name in NAMES:
        httpd.put(f"/inc/{name}", os.urandom(100_000))
    httpd.put_generated("/inc/big.bin", 3_000_000, seed=7)  # an ETag that is not an MD5
    objects = {name: f"{httpd.url}/inc/{name}" for name in (*NAMES, "big.bin")}
    job = {"type": "multi", "bucket": {"name": "inc"}, "objects": objects}
    home.submit(job)
    assert home.run().returncode == 0

    changed = os.urandom(120_000)
    httpd.put("/inc/c.bin", changed)
    httpd.reset_stats()
    again = home.submit(job)
    assert home.run().returncode == 0

    gets = {r.path.rsplit("/", 1)[1]: r for r in httpd.requests if r.method == "GET"}
    assert len(httpd.requests) == 5 and set(gets) == set(objects)  # one GET each, no HEAD
    for name in ("a.bin", "b.bin", "d.bin", "big.bin"):
        assert gets[name].headers.get("If-None-Match") == httpd.etag(f"/inc/{name}"), name
        assert (gets[name].status, gets[name].bytes_sent) == (304, 0), name
    assert (gets["c.bin"].status, httpd.bytes_sent) == (200, len(changed))
    status = home.status(again)
    assert (status["state"], status["finished_cnt"], status["skipped_cnt"], status["error_cnt"]) == (
        "finished",
        5,
        4,
        0,
    )
    stored = home.find("ais", "inc", "c.bin")
    assert stored is not None and stored.read_bytes() == changed
    assert _catalog_etag(home, "c.bin") == httpd.etag("/inc/c.bin")
    assert home.ls("ais://inc")["c.bin"] == len(changed)
    counters_match_rows(home.ledger(), again)

"""Large objects through the libcurl loop as parallel ranged segments:
each answer checked, the segment map kept for a crash, a server that
ignores ranges fetched whole."""

from __future__ import annotations

import hashlib
import itertools
import json

import pytest

from harness.httpd import Fault, TestHTTPServer
from tests.conftest import Home, counters_match_rows, wait_for

THRESHOLD = 1 << 20
CHUNK = 1 << 16
SIZE = 8 << 20


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@pytest.fixture
def segmented(home: Home) -> Home:
    home.env["DLENGINE_SEGMENT_THRESHOLD"] = str(THRESHOLD)
    home.env["DLENGINE_CHUNK"] = str(CHUNK)
    return home


def _submit(home: Home, httpd: TestHTTPServer, path: str) -> str:
    job = {"type": "single", "bucket": {"name": "seg"}, "link": httpd.url + path, "object_name": "big.bin"}
    return home.submit(job)


def _ranged(httpd: TestHTTPServer, path: str) -> list[tuple[int, int]]:
    """(start, end) of every ranged GET the server answered for ``path``."""
    spans = []
    for r in httpd.requests:
        if r.path == path and "Range" in r.headers:
            start, _, end = r.headers["Range"].removeprefix("bytes=").partition("-")
            spans.append((int(start), int(end)))
    return sorted(spans)


def _assert_stored(home: Home, httpd: TestHTTPServer, path: str, job_id: str) -> None:
    stored = home.find("ais", "seg", "big.bin")
    assert stored is not None and _md5(stored.read_bytes()) == _md5(httpd.expected_bytes(path))
    assert home.work_files() == []
    counters_match_rows(home.ledger(), job_id)


def test_a_large_object_comes_in_ranged_segments(segmented: Home, httpd: TestHTTPServer) -> None:
    path = "/seg/a.bin"
    httpd.put_generated(path, SIZE, seed=1)
    job_id = _submit(segmented, httpd, path)
    assert segmented.run().returncode == 0
    _assert_stored(segmented, httpd, path, job_id)
    spans = _ranged(httpd, path)
    assert len(spans) == 7, spans  # segment 0 is the first, whole-object answer, cut at its end
    step = SIZE // 8
    assert spans == [(i * step, (i + 1) * step - 1) for i in range(1, 8)]
    etag = httpd.etag(path)
    assert all(r.headers.get("If-Range") == etag for r in httpd.requests if "Range" in r.headers)
    assert all(r.status == 206 for r in httpd.requests if "Range" in r.headers)


def test_a_job_with_a_connection_limit_keeps_one_connection_per_object(segmented: Home, httpd: TestHTTPServer) -> None:
    path = "/seg/limited.bin"
    httpd.put_generated(path, SIZE, seed=2)
    job = {"type": "single", "bucket": {"name": "seg"}, "link": httpd.url + path, "object_name": "big.bin"}
    job["limits"] = {"connections": 2}
    job_id = segmented.submit(job)
    assert segmented.run().returncode == 0
    _assert_stored(segmented, httpd, path, job_id)
    assert _ranged(httpd, path) == []


def test_a_server_that_ignores_ranges_gets_the_object_whole(segmented: Home, httpd: TestHTTPServer) -> None:
    path = "/seg/noranges.bin"
    httpd.put_generated(path, SIZE, seed=3)
    httpd.set_fault(path, Fault(ignore_range=True))
    job_id = _submit(segmented, httpd, path)
    assert segmented.run().returncode == 0
    _assert_stored(segmented, httpd, path, job_id)
    gets = [(r.headers.get("Range"), r.status) for r in httpd.requests if r.path == path]
    # each worker process learns it once, then fetches it in one stream
    assert gets[-1] == (None, 200) and len(gets) <= 2 * 8 + 1, gets


def test_a_kill_resumes_every_segment_where_it_stopped(segmented: Home, httpd: TestHTTPServer) -> None:
    path = "/seg/slow.bin"
    httpd.put_generated(path, SIZE, seed=4)
    httpd.set_fault(path, Fault(rate=400_000))  # per connection: kills land mid-segment
    job_id = _submit(segmented, httpd, path)
    runner = segmented.spawn("run")
    wait_for(lambda: len(_ranged(httpd, path)) == 7 and httpd.bytes_sent_for(path) > 3 * SIZE // 8, timeout=60)
    wait_for(lambda: any(pos > start for start, pos, _ in _kept_map(segmented)), timeout=30)  # saved twice a second
    segmented.kill(runner)
    kept = _kept_map(segmented)
    assert len(kept) == 8 and any(pos > start for start, pos, _ in kept), kept
    resumed = _resumed(segmented, httpd, path, job_id)
    assert resumed == sorted(pos for _, pos, end in kept if pos < end)  # each from where the map says
    refetched = httpd.bytes_sent_for(path) - SIZE
    print(f"bytes re-fetched after a kill, 8 segments, chunk {CHUNK}: {refetched}")
    # bytes in flight when killed (socket buffers), never the segments again
    assert refetched < SIZE // 2, refetched


def test_a_lagging_segment_hands_half_of_what_it_has_left_to_a_new_one(segmented: Home, httpd: TestHTTPServer) -> None:
    """When a segment ends while another has bytes still to come, the
    second half of those goes to a new segment on the freed connection,
    and the lagging one stops at the middle."""
    path, size = "/seg/lagging.bin", 32 << 20
    httpd.put_generated(path, size, seed=5, content_md5=True)  # (its MD5, computed in order, is checked)
    httpd.set_fault(path, Fault(rate=1 << 20, times=1))  # the first request (segment 0) at 1 MiB/s, the rest at once
    job_id = _submit(segmented, httpd, path)
    assert segmented.run().returncode == 0
    _assert_stored(segmented, httpd, path, job_id)
    step = size // 8
    spans = _ranged(httpd, path)
    assert [s for s in spans if s[0] % step == 0] == [(i * step, (i + 1) * step - 1) for i in range(1, 8)]
    stolen = [s for s in spans if s[0] % step]
    assert any(0 < start < step and end == step - 1 for start, end in stolen), spans  # segment 0's rest, halved
    first = [r for r in httpd.requests if r.path == path and "Range" not in r.headers]
    with segmented.ledger() as conn:
        (checksum,) = conn.execute("SELECT checksum FROM objects").fetchone()
    assert checksum == f"md5:{_md5(httpd.expected_bytes(path))}"  # verified, hashed in order across the halves
    # cut at the middle (what the server counts as sent includes what was in flight then)
    assert len(first) == 1 and first[0].bytes_sent < step - (1 << 20), first


def test_a_kill_after_a_split_resumes_both_halves(segmented: Home, httpd: TestHTTPServer) -> None:
    path, size = "/seg/split-kill.bin", 32 << 20
    httpd.put_generated(path, size, seed=6, content_md5=True)
    httpd.set_fault(path, Fault(rate=200_000, times=1))  # segment 0 slow: it is split, and the kill lands in it
    job_id = _submit(segmented, httpd, path)
    runner = segmented.spawn("run")
    wait_for(lambda: len(_kept_map(segmented)) > 8, timeout=60)  # a split is in the map
    segmented.kill(runner)
    kept = _kept_map(segmented)
    spans = sorted((start, end) for start, _, end in kept)
    assert spans[0][0] == 0 and spans[-1][1] == size, spans
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans)), spans  # contiguous, by their starts
    resumed = _resumed(segmented, httpd, path, job_id)
    unfinished = sorted(pos for _, pos, end in kept if pos < end)
    assert set(unfinished) <= set(resumed), (resumed, unfinished)  # each unfinished half from where the map says


def test_segments_grow_while_each_connection_is_capped(segmented: Home, httpd: TestHTTPServer) -> None:
    """A server (a mirror, a CDN) that caps each connection's rate: each
    connection added brings a connection's worth more, so the object takes
    more connections than its first eight, up to 16."""
    path, size = "/seg/capped.bin", 48 << 20
    httpd.put_generated(path, size, seed=7, content_md5=True)
    httpd.set_fault(path, Fault(rate=2_000_000))  # per connection: 8 x 6 MiB segments would take 3 s
    job_id = _submit(segmented, httpd, path)
    assert segmented.run().returncode == 0
    _assert_stored(segmented, httpd, path, job_id)
    assert 8 < httpd.peak_concurrency <= 16, httpd.peak_concurrency
    assert all(r.status == 206 for r in httpd.requests if "Range" in r.headers)


def test_a_server_that_turns_away_a_connection_more_still_serves_the_object(
    segmented: Home, httpd: TestHTTPServer
) -> None:
    """Grown segments that the server turns away (503: it takes 8 connections
    at most) wait for a connection of the object to end; the object is not
    failed and retried for it, and no more connections are tried."""
    path, size = "/seg/crowded.bin", 48 << 20
    httpd.put_generated(path, size, seed=8, content_md5=True)
    httpd.set_fault(path, Fault(rate=2_000_000, busy_beyond=8))
    job_id = _submit(segmented, httpd, path)
    assert segmented.run().returncode == 0
    _assert_stored(segmented, httpd, path, job_id)
    turned = [r for r in httpd.requests if r.status == 503]
    assert turned and all("Range" in r.headers for r in turned), turned
    assert len(turned) <= 8, len(turned)  # the first growth's, not one after another
    with segmented.ledger() as conn:
        assert [tuple(r) for r in conn.execute("SELECT state, attempts, error FROM objects")] == [("done", 1, None)]


def test_a_server_that_takes_one_connection_serves_the_segments_one_by_one(
    segmented: Home, httpd: TestHTTPServer
) -> None:
    """Every segment but the first is turned away (503: one connection at
    most): they wait, and when the one that runs ends, the next goes on
    the connection it freed, until the object is whole; it is not failed
    with a segment "ended early" when the last running one ends (five
    times, then given up: before). A second attempt may be needed: the
    first answer (the whole object, cut at its segment's end) still counts
    at the server for a moment after the cut, and a segment turned away
    with none running fails the attempt; the next resumes from the map."""
    path = "/seg/single.bin"
    httpd.put_generated(path, SIZE, seed=9, content_md5=True)
    httpd.set_fault(path, Fault(rate=4_000_000, busy_beyond=1))
    job_id = _submit(segmented, httpd, path)
    assert segmented.run().returncode == 0
    _assert_stored(segmented, httpd, path, job_id)
    assert [r.status for r in httpd.requests if r.status == 503]  # (they were turned away)
    with segmented.ledger() as conn:
        [(state, attempts, error)] = conn.execute("SELECT state, attempts, error FROM objects").fetchall()
    assert (state, error) == ("done", None) and attempts <= 2, (state, attempts, error)


def _resumed(home: Home, httpd: TestHTTPServer, path: str, job_id: str) -> list[int]:
    """After a kill: the faults cleared, the next run stores the object;
    where each of its ranged requests started."""
    httpd.clear_faults()
    before = len(httpd.requests)
    assert home.run().returncode == 0
    _assert_stored(home, httpd, path, job_id)
    return sorted(
        int(r.headers["Range"].removeprefix("bytes=").partition("-")[0])
        for r in httpd.requests[before:]
        if r.path == path and "Range" in r.headers
    )


def _kept_map(home: Home) -> list[list[int]]:
    """The segment map of the one work file (empty while there is none)."""
    meta = [p for p in home.work_files() if p.suffix == ".meta"]
    assert len(meta) <= 1
    return json.loads(meta[0].read_text()).get("segments") or [] if meta else []


# -- the checks on each segment's answer (no server can be made to send
# -- these at the right moment, so they are checked on crafted answers)

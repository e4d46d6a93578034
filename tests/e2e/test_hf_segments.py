"""Large LFS files of the Hub come from their CDN in parallel ranged
segments (issue 17: large objects on the segmented path; a single stream
is what loses 5-8x behind a per-connection cap or a lossy link): the Hub
is asked once, with the token; each segment goes to the CDN's URL without
it; the sha256 the Hub named verifies the whole; a kill keeps every
segment's progress, and the next run asks the Hub again (its CDN URLs
are signed and expire) and resumes each segment there.

Against the fake Hub (``harness/fakehub.py``) and its CDN (``harness/httpd.py``)."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from harness.fakehub import TOKEN, FakeHub
from harness.httpd import Fault, TestHTTPServer
from tests.conftest import Home, wait_for

THRESHOLD = 1 << 20
SIZE = 8 << 20


@pytest.fixture
def segmented(hhome: Home) -> Home:
    hhome.env["DLENGINE_SEGMENT_THRESHOLD"] = str(THRESHOLD)
    hhome.env["DLENGINE_CHUNK"] = str(1 << 16)
    return hhome


def _lfs_gets(cdn: TestHTTPServer, path: str) -> list[dict[str, str]]:
    return [r.headers for r in cdn.requests if r.path == path]


def _starts(gets: list[dict[str, str]]) -> list[int]:
    return sorted(int(h["Range"].removeprefix("bytes=").partition("-")[0]) for h in gets if "Range" in h)


def _kept_map(home: Home) -> list[list[int]]:
    meta = [p for p in home.work_files() if p.suffix == ".meta"]
    assert len(meta) <= 1
    return json.loads(meta[0].read_text()).get("segments") or [] if meta else []


def test_a_large_lfs_file_comes_from_its_cdn_in_segments_without_the_token(
    segmented: Home, hub: FakeHub, cdn: TestHTTPServer
) -> None:
    data = os.urandom(SIZE)
    hub.add_repo("org/seg", {"model.bin": data}, private=True)
    segmented.env["HF_TOKEN"] = TOKEN
    sha = hub.file("org/seg", "model.bin").sha256
    path = f"/lfs/{sha}"
    job = segmented.submit({"type": "single", "bucket": {"name": "seg"}, "link": "hf://datasets/org/seg/model.bin"})
    res = segmented.run()
    assert res.returncode == 0, res.stderr[-3000:]
    assert segmented.status(job)["finished_cnt"] == 1
    stored = segmented.find("ais", "seg", "model.bin")
    assert stored is not None and stored.read_bytes() == data
    assert segmented.work_files() == []

    assert len(hub.requests("org/seg/resolve/")) == 1  # the Hub once; every segment asks the CDN's URL itself
    gets = _lfs_gets(cdn, path)
    step = SIZE // 8
    assert _starts(gets) == [i * step for i in range(1, 8)], gets  # segment 0 is the first answer, cut at its end
    etag = cdn.etag(path)
    assert all(h.get("If-Range") == etag for h in gets if "Range" in h)  # the CDN's own ETag guards them
    assert not any(k.lower() in ("authorization", "cookie") for h in gets for k in h)
    with segmented.ledger() as conn:
        (recorded, checksum) = conn.execute("SELECT etag, checksum FROM objects").fetchone()
    assert (recorded, checksum) == (f'"{sha}"', f"sha256:{sha}")  # what the Hub said, not the CDN


def test_segments_of_other_bytes_fail_the_hubs_sha256_and_nothing_is_stored(
    segmented: Home, hub: FakeHub, cdn: TestHTTPServer
) -> None:
    data = os.urandom(SIZE)
    hub.add_repo("org/bad", {"model.bin": data})
    hub.corrupt("org/bad", "model.bin")  # the CDN serves other bytes of the same length
    segmented.env["DLENGINE_ATTEMPTS"] = "1"
    job = segmented.submit({"type": "single", "bucket": {"name": "bad"}, "link": "hf://datasets/org/bad/model.bin"})
    assert segmented.run().returncode == 1
    assert _starts(_lfs_gets(cdn, f"/lfs/{hub.file('org/bad', 'model.bin').sha256}"))  # it did come in segments
    status = segmented.status(job)
    assert (status["finished_cnt"], status["error_cnt"]) == (0, 1)
    [error] = status["download_errors"]
    assert "checksum mismatch (sha256)" in error["error"], error
    assert segmented.find("ais", "bad", "model.bin") is None


def test_a_kill_resumes_every_segment_on_the_cdn_the_hub_redirects_to_again(
    segmented: Home, hub: FakeHub, cdn: TestHTTPServer
) -> None:
    data = os.urandom(SIZE)
    hub.add_repo("org/kill", {"model.bin": data})
    path = f"/lfs/{hub.file('org/kill', 'model.bin').sha256}"
    cdn.set_fault(path, Fault(rate=400_000))  # per connection: the kill lands mid-segment
    job = segmented.submit({"type": "single", "bucket": {"name": "kill"}, "link": "hf://datasets/org/kill/model.bin"})
    runner = segmented.spawn("run")
    wait_for(lambda: len(_starts(_lfs_gets(cdn, path))) == 7, timeout=60)
    wait_for(lambda: any(pos > start for start, pos, _ in _kept_map(segmented)), timeout=30)
    segmented.kill(runner)
    kept = _kept_map(segmented)
    assert len(kept) == 8 and any(pos > start for start, pos, _ in kept), kept

    cdn.clear_faults()
    hub.reset()
    before = len(cdn.requests)
    assert segmented.run().returncode == 0
    assert segmented.status(job)["finished_cnt"] == 1
    stored = segmented.find("ais", "kill", "model.bin")
    assert stored is not None and hashlib.sha256(stored.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert len(hub.requests("org/kill/resolve/")) == 1  # a fresh CDN URL from the Hub
    again = [r.headers for r in cdn.requests[before:] if r.path == path]
    assert _starts(again) == sorted(pos for _, pos, end in kept if pos < end)  # each where the map says
    assert all("Range" in h for h in again)  # nothing asked again from the start
    assert not any("If-Range" in h for h in again)  # the Hub vouched for the bytes; the sha256 checks them


def test_a_cdn_url_that_expires_under_the_segments_is_asked_for_again(
    segmented: Home, hub: FakeHub, cdn: TestHTTPServer
) -> None:
    """The CDN refuses the segments (403: its signed URL expired, as one
    split off late in a long download finds): not a file denied. The next
    attempt asks the Hub for a new URL and goes on with what was kept."""
    data = os.urandom(SIZE)
    hub.add_repo("org/exp", {"model.bin": data})
    path = f"/lfs/{hub.file('org/exp', 'model.bin').sha256}"
    cdn.set_fault(path, Fault(status=403, ranged=True, times=7))  # every ranged segment of the first attempt
    job = segmented.submit({"type": "single", "bucket": {"name": "exp"}, "link": "hf://datasets/org/exp/model.bin"})
    res = segmented.run()
    assert res.returncode == 0, res.stderr[-3000:]
    status = segmented.status(job)
    assert (status["finished_cnt"], status["error_cnt"]) == (1, 0), status
    stored = segmented.find("ais", "exp", "model.bin")
    assert stored is not None and stored.read_bytes() == data
    assert len(hub.requests("org/exp/resolve/")) == 2  # a new CDN URL for the second attempt
    ranged = [r for r in cdn.requests if r.path == path and "Range" in r.headers]
    assert [r.status for r in ranged].count(403) == 7 and len(ranged) >= 14, [(r.status, r.headers) for r in ranged]

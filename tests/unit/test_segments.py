"""Segment planning and answer checks of the libcurl loop in process: when an
object is split (size, ranges, a strong ETag), and what each segment's
answer must be. End to end: tests/e2e/test_segments.py."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from dlengine.engine.curl import LinkExpired, RangesIgnored, _Answer, _Group, _Transfer, segment_bounds
from dlengine.errors import SourceChangedError, SourceDeniedError
from dlengine.ledger.models import Task
from dlengine.sources.base import ObjectInfo, Request
from dlengine.sources.hfroute import HubRoute

THRESHOLD = 1 << 20
SIZE = 8 << 20


def _task(connections: int = 0) -> Task:
    return Task(1, "j", 1, "o", "http://h/o", 1, 1, "ais", "", "b", 0.0, 0, connections=connections)


def _answer(status: int, **headers: str) -> _Answer:
    answer = _Answer()
    answer.status = status
    for name, value in headers.items():
        answer.headers[name.replace("_", "-").lower()] = value
    return answer


def test_segment_bounds_need_size_ranges_and_a_strong_etag() -> None:
    info = ObjectInfo("k", size=SIZE, etag='"v1"')
    ok = _answer(200, accept_ranges="bytes", etag='"v1"')
    bounds = segment_bounds(_task(), info, ok, THRESHOLD)
    assert bounds is not None and len(bounds) == 8 and bounds[0][0] == 0 and bounds[-1][1] == SIZE
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert segment_bounds(_task(), ObjectInfo("k", size=THRESHOLD - 1, etag='"v1"'), ok, THRESHOLD) is None
    assert segment_bounds(_task(), ObjectInfo("k", size=SIZE, etag='W/"v1"'), ok, THRESHOLD) is None
    assert segment_bounds(_task(), ObjectInfo("k", size=SIZE), ok, THRESHOLD) is None
    assert segment_bounds(_task(), info, _answer(200, etag='"v1"'), THRESHOLD) is None
    assert segment_bounds(_task(connections=4), info, ok, THRESHOLD) is None
    # an ETag the answer does not carry (a listing's, GCS's emulator) guards no segment
    assert segment_bounds(_task(), info, _answer(200, accept_ranges="bytes"), THRESHOLD) is None
    assert segment_bounds(_task(), info, _answer(200, accept_ranges="bytes", etag='"v0"'), THRESHOLD) is None


def test_objects_in_flight_share_the_loops_segments() -> None:
    """One large object alone takes every segment it may; objects in
    flight together share ``STREAMS`` (at most the claim's count each:
    ``most`` only lowers it), and from that many on each comes whole."""
    from types import SimpleNamespace

    from dlengine.engine.curl import STREAMS, CurlLoop

    info = ObjectInfo("k", size=SIZE, etag='"v1"')
    ok = _answer(200, accept_ranges="bytes", etag='"v1"')
    assert [len(segment_bounds(_task(), info, ok, THRESHOLD, most) or ()) for most in (8, 9, 4, 2)] == [8, 8, 4, 2]
    assert segment_bounds(_task(), info, ok, THRESHOLD, 1) is None  # (one stream: no segments)
    loop = CurlLoop(lambda result, sidecar: None)
    try:
        for objects, most in ((1, STREAMS), (2, STREAMS // 2), (4, STREAMS // 4), (STREAMS, 1), (3 * STREAMS, 1)):
            # (the transfers in flight: two of the first object's segments, one for each other)
            active = [SimpleNamespace(task=SimpleNamespace(id=i)) for i in (0, *range(objects))]
            loop._active = {object(): t for t in active}  # type: ignore[misc]
            loop._objects = dict(Counter(t.task.id for t in active))  # (what ``_add`` counts)
            assert loop.segments_now() == most, objects
    finally:
        loop._multi.close()
        loop._wake.close()


class _Receiver:
    segments = [[0, 100, 100], [100, 150, 200]]
    request = Request("http://h/o")


def _group() -> _Group:
    first = _Transfer.__new__(_Transfer)
    first.receiver = _Receiver()  # type: ignore[assignment]
    first.task = _task()
    first.route = None
    return _Group(first, '"v1"', 200)


def test_each_segment_answer_must_be_its_range_of_the_same_version() -> None:
    group = _group()
    group.check(1, _answer(206, content_range="bytes 150-199/200", etag='"v1"'))  # accepted
    with pytest.raises(SourceChangedError, match="ETag"):
        group.check(1, _answer(206, content_range="bytes 150-199/200", etag='"v2"'))
    with pytest.raises(SourceChangedError, match="range"):
        group.check(1, _answer(206, content_range="bytes 0-199/200", etag='"v1"'))
    with pytest.raises(SourceChangedError, match="range"):
        group.check(1, _answer(206, content_range="bytes 150-199/300", etag='"v1"'))
    with pytest.raises(SourceChangedError, match="changed"):
        group.check(1, _answer(200, etag='"v2"'))
    with pytest.raises(RangesIgnored):
        group.check(1, _answer(200, etag='"v1"'))
    with pytest.raises(RangesIgnored, match="no ETag"):  # no version to check: whole next time
        group.check(1, _answer(206, content_range="bytes 150-199/200"))


@pytest.mark.parametrize("size", [0, THRESHOLD - 1, THRESHOLD, THRESHOLD + 1, 2 * THRESHOLD, SIZE, 5 * SIZE])
def test_a_weighed_claim_counts_an_object_as_its_segments(size: int) -> None:
    """``claims.connections`` (what a worker claims a large object as) is
    the number of segments the loop will open for it."""
    from dlengine.engine.curl import SEGMENTS
    from dlengine.ledger.claims import connections

    bounds = segment_bounds(
        _task(), ObjectInfo("k", size=size, etag='"v1"'), _answer(200, accept_ranges="bytes", etag='"v1"'), THRESHOLD
    )
    assert connections(size, THRESHOLD, SEGMENTS) == (len(bounds) if bounds else 1)


def test_a_routes_validator_stands_in_for_the_objects_etag() -> None:
    """An LFS file's CDN answer (``Route.segment_validator``): the Hub's
    etag (its sha256) is what is recorded, not the CDN's; segments need the
    size and ranges still, not an answer carrying the recorded ETag."""
    hub_info = ObjectInfo("k", size=SIZE, etag='"sha"')
    cdn = _answer(200, accept_ranges="bytes", etag='"md5-of-cdn"')
    assert segment_bounds(_task(), hub_info, cdn, THRESHOLD) is None  # (its ETag is not the object's)
    assert len(segment_bounds(_task(), hub_info, cdn, THRESHOLD, validator='"md5-of-cdn"') or ()) == 8
    assert (
        len(segment_bounds(_task(), hub_info, _answer(200, accept_ranges="bytes"), THRESHOLD, validator="") or ()) == 8
    )
    assert segment_bounds(_task(), hub_info, _answer(200), THRESHOLD, validator="") is None  # no ranges
    assert segment_bounds(_task(connections=2), hub_info, cdn, THRESHOLD, validator="") is None
    assert segment_bounds(_task(), ObjectInfo("k", size=THRESHOLD - 1), cdn, THRESHOLD, validator="") is None


def test_a_vouched_group_without_a_validator_checks_each_answers_range() -> None:
    group = _group()
    group.validator = ""
    group.first.route = HubRoute("hf://datasets/o/r/f", "http://hub/resolve", {})  # (a route's group is vouched)
    group.check(1, _answer(206, content_range="bytes 150-199/200"))  # no ETag needed: the sha256 checks the whole
    group.check(1, _answer(206, content_range="bytes 150-199/200", etag='"any"'))
    with pytest.raises(SourceChangedError, match="range"):
        group.check(1, _answer(206, content_range="bytes 150-199/300"))
    with pytest.raises(RangesIgnored):
        group.check(1, _answer(200, etag='"any"'))
    with pytest.raises(LinkExpired, match="HTTP 403 from the CDN"):  # its signed URL expired: asked for again
        group.check(1, _answer(403))


def test_a_refused_segment_of_a_plain_object_is_denied_not_expired() -> None:
    with pytest.raises(SourceDeniedError):
        _group().check(1, _answer(403))


def test_the_hub_route_vouches_for_segments_of_lfs_files_only() -> None:
    route = HubRoute("hf://datasets/o/r/f", "http://hub/resolve", {})
    assert route.segment_validator({"etag": '"cdn"'}) is None  # the Hub's own answer (a small file)
    route.hub = ObjectInfo("k", size=SIZE, etag='"blob"')
    assert route.segment_validator({"etag": '"cdn"'}) is None  # no sha256 to verify the whole by
    route.hub = ObjectInfo("k", size=SIZE, etag='"' + "a" * 64 + '"', checksums={"sha256": "a" * 64})
    assert route.segment_validator({"etag": '"cdn"'}) == '"cdn"'
    assert route.segment_validator({"etag": 'W/"cdn"'}) == ""  # a weak one guards nothing: ranges only
    assert route.segment_validator({}) == ""
    assert route.names('"' + "a" * 64 + '"') and not route.names('"other"')


def test_an_object_grows_by_half_while_each_connection_keeps_its_rate() -> None:
    from dlengine.engine.curl import GROW_KEEPS, grown

    assert grown(8, 1e6, 0.0, 8) == 4  # the first look: half as many again
    assert grown(12, 0.9e6, 1e6, 4) == 4  # each kept most of its rate: more (as many as there is room for)
    assert grown(8, 1e6, 0.0, 0) == 0  # no room in the loop now: none, but it may grow later
    assert grown(1, 1e6, 0.0, 8) == 1
    assert grown(12, (GROW_KEEPS - 0.01) * 1e6, 1e6, 4) == -1  # the link, not each connection, was the limit

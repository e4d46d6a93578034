"""Segment planning and answer checks of the libcurl loop in process: when an
object is split (size, ranges, a strong ETag), and what each segment's
answer must be. End to end: tests/e2e/test_segments.py."""

from __future__ import annotations

import itertools

import pytest

from dlengine.engine.curl import RangesIgnored, _Answer, _Group, _Transfer, segment_bounds
from dlengine.errors import SourceChangedError
from dlengine.ledger.models import Task
from dlengine.sources.base import ObjectInfo

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
            assert loop.segments_now() == most, objects
    finally:
        loop._multi.close()
        loop._wake.close()


class _Receiver:
    segments = [[0, 100, 100], [100, 150, 200]]


def _group() -> _Group:
    first = _Transfer.__new__(_Transfer)
    first.receiver = _Receiver()  # type: ignore[assignment]
    first.task = _task()
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

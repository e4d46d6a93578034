"""A worker holds more rows than its libcurl loop has connections (the
rest wait in the loop's backlog) as soon as its first objects end fast,
not after the first lease renewal a second later; slow objects leave no
room ahead (their rows would wait here while another worker is free). The
loop's connections follow the same pace: DLENGINE_THREADS, and as many
more as end in a quarter second, up to ``WIDEST`` times the threads (the
loop opens them a few at a time: ``curl.CONNECTING``), never again past
``fewest`` once a server turned an object away."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from dlengine.engine import curl
from dlengine.ledger.models import Outcome
from dlengine.ledger.states import ObjectState
from dlengine.supervisor import worker


@pytest.fixture
def me() -> Iterator[Any]:
    """A worker of 16 threads with a real libcurl loop (not running), no ledger."""
    me: Any = worker.Worker.__new__(worker.Worker)
    me._threads, me._downloaders = 16, []
    me._curl = curl.CurlLoop(lambda result, sidecar: None, connections=16, fewest=8)
    me._stored, me._stored_lock, me._unfreed = set(), threading.Lock(), 0
    me._results = me._synced = queue.SimpleQueue()
    me._ended, me._ended_mark, me._mark_at, me._rate = 0, 0, 100.0, 0.0
    yield me
    me._curl.stop()
    me._curl.run()  # (stops at once: closes its handles and pipe)


def _end(me: Any, count: int) -> None:
    """``count`` outcomes handed on, as the libcurl loop hands them (``_hand_on``)."""
    me._hand_on([(Outcome(i, ObjectState.DONE), f"/x/o{i}") for i in range(count)])


def test_nothing_ended_yet_is_the_connections_alone(me: Any) -> None:
    assert me._room(100.01) == 16
    assert me._curl.connections == 16


def test_slow_objects_bring_the_connections_back(me: Any) -> None:
    _end(me, 1000)
    me._renew_pace(101.0)
    assert me._room(101.1) > 16 * worker.WIDEST
    _end(me, 2)
    me._renew_pace(102.0)  # (2 a second)
    assert me._room(102.1) == 16
    assert me._curl.connections == 16


def test_fast_ends_claim_ahead_at_once(me: Any) -> None:
    _end(me, 16)  # in 0.1 s: 160 a second
    assert me._pace(100.1) == pytest.approx(160)
    assert me._room(100.1) == (16 + 40) + 40  # a quarter second of them more in flight, as many ahead...
    assert me._curl.connections == 16 + 40
    _end(me, 400)
    assert me._room(100.1) == 16 * worker.WIDEST + worker.AHEAD * 16  # ...at most WIDEST, AHEAD times the threads
    assert me._curl.connections == 16 * worker.WIDEST


def test_a_short_window_is_not_taken_at_its_word(me: Any) -> None:
    """One object ended 1 ms in: measured over PACE_LEAST, not 1 ms."""
    _end(me, 1)
    assert me._pace(100.001) == pytest.approx(1 / worker.PACE_LEAST)


def test_slow_objects_leave_no_room_ahead(me: Any) -> None:
    _end(me, 3)
    assert me._room(102.0) == 16  # 1.5 a second: nothing ends within a quarter second


def test_a_renewals_pace_holds_for_the_next_window(me: Any) -> None:
    _end(me, 40)
    me._renew_pace(101.0)  # 40 a second
    assert me._room(101.5) == (16 + 10) + 10
    assert me._curl.connections == 26
    _end(me, 1000)
    me._renew_pace(102.0)  # 1,000 a second
    assert me._room(102.9) == 16 * worker.WIDEST + worker.AHEAD * 16  # (the window's few ends: the last pace holds)
    assert me._curl.connections == 16 * worker.WIDEST


def test_a_server_that_turned_an_object_away_keeps_them_few(me: Any) -> None:
    _end(me, 1000)
    me._curl.turned_away = True
    me._renew_pace(101.0)
    assert me._room(101.5) == 8 + worker.AHEAD * 16
    assert me._curl.connections == 8


def test_download_threads_count_as_the_threads(me: Any) -> None:
    me._downloaders = [object()]
    me._curl.turned_away = True
    assert me._room(100.01) == 16


def test_one_thread_is_one_object_at_a_time(me: Any) -> None:
    me._threads = 1
    _end(me, 1000)
    me._renew_pace(101.0)
    me._room(101.5)
    assert me._curl.connections == 1

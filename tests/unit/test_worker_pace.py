"""A worker holds more rows than its libcurl loop has connections (the
rest wait in the loop's backlog) as soon as its first objects end fast,
not after the first lease renewal a second later; slow objects leave no
room ahead (their rows would wait here while another worker is free)."""

from __future__ import annotations

import queue
import threading
from typing import Any

import pytest

from dlengine.supervisor import worker


class _Loop:
    connections = 16


def _worker(threads: int = 16) -> Any:
    me: Any = worker.Worker.__new__(worker.Worker)  # (no ledger, no libcurl loop)
    me._threads, me._curl, me._downloaders = threads, _Loop(), []
    me._stored, me._stored_lock, me._unfreed = set(), threading.Lock(), 0
    me._results = me._synced = queue.SimpleQueue()
    me._ended, me._ended_mark, me._mark_at, me._rate = 0, 0, 100.0, 0.0
    return me


def _end(me: Any, count: int) -> None:
    """``count`` outcomes handed on, as the libcurl loop hands them (``_hand_on``)."""
    from dlengine.ledger.models import Outcome
    from dlengine.ledger.states import ObjectState

    me._hand_on([(Outcome(i, ObjectState.DONE), f"/x/o{i}") for i in range(count)])


def test_nothing_ended_yet_is_the_connections_alone() -> None:
    me = _worker()
    assert me._room(100.01) == 16


def test_fast_ends_claim_ahead_at_once() -> None:
    me = _worker()
    _end(me, 16)  # in 0.1 s: 160 a second
    assert me._pace(100.1) == pytest.approx(160)
    assert me._room(100.1) == 16 + 40  # a quarter second of them...
    _end(me, 400)
    assert me._room(100.1) == 16 + worker.AHEAD * 16  # ...at most AHEAD times the threads


def test_a_short_window_is_not_taken_at_its_word() -> None:
    """One object ended 1 ms in: measured over PACE_LEAST, not 1 ms."""
    me = _worker()
    _end(me, 1)
    assert me._pace(100.001) == pytest.approx(1 / worker.PACE_LEAST)


def test_slow_objects_leave_no_room_ahead() -> None:
    me = _worker()
    _end(me, 3)
    assert me._room(102.0) == 16  # 1.5 a second: nothing ends within a quarter second


def test_the_last_windows_pace_holds_until_the_current_one_is_faster() -> None:
    me = _worker()
    me._rate = 100.0
    assert me._room(100.5) == 16 + 25
    _end(me, 80)  # 160 a second now
    assert me._room(100.5) == 16 + 40


def test_download_threads_count_as_the_threads() -> None:
    me = _worker(threads=4)
    me._curl.connections = 2  # (turned away: fewer)
    assert me._room(100.01) == 2
    me._downloaders = [object()]
    assert me._room(100.01) == 4

"""The ledger thread records durable outcomes in batches: those ready wait
for more (REPORT_BATCH of them, at most REPORT_HOLD seconds), as one
transaction's cost is mostly fixed (issue 12: the small objects' CPU); the
last outcomes of what it claimed go at once (a job's end is not delayed),
and so does everything while a job with a connection limit has rows here
(an unrecorded row holds one of its connections in the ledger)."""

from __future__ import annotations

import queue
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from dlengine.ledger.models import Outcome
from dlengine.ledger.states import ObjectState
from dlengine.supervisor import worker

HOLD = 1.0  # long enough that a hold shows whatever the machine's load


class _Ledger:
    """A worker's ledger thread alone (``_gathered``), with rows claimed."""

    def __init__(self, running: int, connections: int = 0) -> None:
        self.me: Any = worker.Worker.__new__(worker.Worker)  # (no ledger, no libcurl loop)
        self.me._synced = queue.SimpleQueue()
        tasks = [SimpleNamespace(id=i, connections=connections) for i in range(running)]
        self.me._running = {t.id: worker._Running(t) for t in tasks}  # type: ignore[arg-type]
        self.me._held, self.me._held_since = [], 0.0
        self.me._limited = running if connections else 0
        self.me.stop = threading.Event()

    def synced(self, *ids: int) -> None:
        """A batch made durable by the sync thread."""
        self.me._synced.put([(Outcome(i, ObjectState.DONE), f"/mp/o{i}") for i in ids])

    def gathered(self) -> list[int]:
        return [o.task_id for o, _ in self.me._gathered()]


@pytest.fixture(autouse=True)
def _long_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "REPORT_HOLD", HOLD)
    monkeypatch.setattr(worker, "REPORT_BATCH", 4)


def test_a_few_outcomes_wait_for_more_then_go_together() -> None:
    ledger = _Ledger(running=10)
    ledger.synced(0, 1)
    start = time.monotonic()
    assert ledger.gathered() == []
    ledger.synced(2)
    got: list[int] = []
    while not got and time.monotonic() - start < 5 * HOLD:
        got = ledger.gathered()
    assert got == [0, 1, 2]
    assert time.monotonic() - start >= HOLD * 0.9


def test_a_full_batch_goes_at_once() -> None:
    ledger = _Ledger(running=10)
    ledger.synced(0, 1)
    assert ledger.gathered() == []
    ledger.synced(2, 3)
    start = time.monotonic()
    assert ledger.gathered() == [0, 1, 2, 3]
    assert time.monotonic() - start < HOLD / 2


def test_the_last_outcomes_of_what_was_claimed_go_at_once() -> None:
    ledger = _Ledger(running=3)
    ledger.synced(0, 1, 2)
    start = time.monotonic()
    assert ledger.gathered() == [0, 1, 2]
    assert time.monotonic() - start < HOLD / 2


def test_rows_of_a_job_with_a_connection_limit_are_not_held() -> None:
    ledger = _Ledger(running=10, connections=4)
    ledger.synced(0)
    start = time.monotonic()
    assert ledger.gathered() == [0]
    assert time.monotonic() - start < HOLD / 2


def test_a_stopping_worker_holds_nothing() -> None:
    ledger = _Ledger(running=10)
    ledger.me.stop.set()
    ledger.synced(0)
    assert ledger.gathered() == [0]

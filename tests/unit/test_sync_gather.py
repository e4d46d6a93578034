"""The sync thread waits SYNC_GATHER for more outcomes only while enough
objects are still downloading for its batch to reach one syncfs: a lone
object, the last ones of a job or a job of a few go on at once (issue 12:
the fixed cost of a short job), many objects finishing together still
share one syncfs (the small-object throughput)."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dlengine.ledger.models import Outcome
from dlengine.ledger.states import ObjectState
from dlengine.supervisor import worker

GATHER = 1.0  # long enough that a wait shows whatever the machine's load


class _Syncer:
    """A worker's sync thread alone, with ``running`` rows claimed."""

    def __init__(self, tmp_path: Path, running: int) -> None:
        self.mountpath = tmp_path
        self.me: Any = worker.Worker.__new__(worker.Worker)  # (no ledger, no libcurl loop)
        self.me._results, self.me._synced = queue.SimpleQueue(), queue.SimpleQueue()
        self.me._running = {i: object() for i in range(running)}
        self.me._stored, self.me._stored_lock = set(), threading.Lock()
        self.me.mountpath = tmp_path
        self.batches: list[list[int]] = []
        self.me._make_durable = lambda batch: self.batches.append([o.task_id for o, _ in batch])
        self.thread = threading.Thread(target=self.me._sync_loop, daemon=True)
        self.thread.start()

    def finish(self, *ids: int, state: ObjectState = ObjectState.DONE) -> None:
        """Outcomes as the libcurl loop hands them on (``_hand_on``)."""
        results = [(Outcome(i, state), self.mountpath / f"o{i}") for i in ids]
        with self.me._stored_lock:
            self.me._stored.update(i for i in ids if state is ObjectState.DONE)
        self.me._results.put(results)

    def passed_on(self, timeout: float) -> list[int]:
        return [o.task_id for o, _ in self.me._synced.get(timeout=timeout)]

    def stop(self) -> None:
        self.me._results.put(worker._STOP)
        self.thread.join(5)


@pytest.fixture(autouse=True)
def _long_gather(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "SYNC_GATHER", GATHER)


def test_a_lone_object_is_not_held_back(tmp_path: Path) -> None:
    syncer = _Syncer(tmp_path, running=1)
    start = time.monotonic()
    syncer.finish(0)
    assert syncer.passed_on(timeout=5) == [0]
    assert time.monotonic() - start < GATHER / 2
    syncer.stop()


def test_the_objects_of_a_small_job_are_not_held_back(tmp_path: Path) -> None:
    """Four claimed, two stored and waiting to be recorded, one more
    stored, one failed: the two batches go on at once."""
    syncer = _Syncer(tmp_path, running=4)
    start = time.monotonic()
    syncer.finish(0, 1)
    assert syncer.passed_on(timeout=5) == [0, 1]
    syncer.finish(2)
    assert syncer.passed_on(timeout=5) == [2]
    syncer.finish(3, state=ObjectState.FAILED)
    assert syncer.passed_on(timeout=5) == [3]
    assert time.monotonic() - start < GATHER / 2
    syncer.stop()


def test_many_objects_finishing_share_one_sync(tmp_path: Path) -> None:
    """(The control: the wait still gathers.) 20 in flight, one finishes,
    then 11 more a moment later: one batch of 12 (one syncfs)."""
    syncer = _Syncer(tmp_path, running=20)
    start = time.monotonic()
    syncer.finish(0)
    time.sleep(0.05)
    syncer.finish(*range(1, 12))
    assert syncer.passed_on(timeout=5) == list(range(12))
    assert time.monotonic() - start >= GATHER
    assert syncer.batches == [list(range(12))]
    syncer.stop()


def test_gathers() -> None:
    few = worker.FEW_FILES
    assert not worker.gathers(1, 0)
    assert not worker.gathers(1, few - 1)
    assert worker.gathers(1, few)
    assert worker.gathers(few, 1)
    assert not worker.gathers(few + 1, 100)  # already a syncfs

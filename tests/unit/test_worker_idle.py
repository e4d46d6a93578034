"""An idle worker's wait for its next claim ends when another connection
commits to the ledger (a job's rows inserted, a listing's next page), not
only at the end of its claim backoff (up to half a second)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from dlengine.ledger import db
from dlengine.supervisor import worker


def _ledgers(tmp_path: Path) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    path = tmp_path / "ledger.db"
    return db.connect(path), db.connect(path)


@pytest.mark.parametrize("look", [worker.IDLE_LOOK, worker.IDLE_LOOK_LATER], ids=["first-seconds", "later"])
def test_a_commit_by_another_connection_ends_the_wait(tmp_path: Path, look: float) -> None:
    mine, other = _ledgers(tmp_path)
    stop = threading.Event()
    writer = threading.Timer(0.2, lambda: other.execute("CREATE TABLE new_rows (x)"))
    writer.start()
    start = time.monotonic()
    assert worker.wait_for_ledger(mine, stop, start + 30, look)
    waited = time.monotonic() - start
    writer.join()
    assert 0.15 <= waited < 10, waited  # at the commit, not at the end of the wait


def test_without_a_commit_it_waits_until_its_time_or_a_stop(tmp_path: Path) -> None:
    mine, other = _ledgers(tmp_path)
    stop = threading.Event()
    start = time.monotonic()
    other.execute("SELECT count(*) FROM jobs").fetchall()  # (reads change nothing)
    assert not worker.wait_for_ledger(mine, stop, start + 0.3)
    assert time.monotonic() - start >= 0.3
    threading.Timer(0.1, stop.set).start()
    start = time.monotonic()
    assert not worker.wait_for_ledger(mine, stop, start + 30)
    assert time.monotonic() - start < 10

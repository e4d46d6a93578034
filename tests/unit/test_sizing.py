"""Pools sized by the work queued (``supervisor.sizing``, issue 17): the
rows the ledger counts (``queued``, before the fork ``queued_rows``) and
the workers they make."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from dlengine.config import Settings, load_settings
from dlengine.ledger import claims, db, jobs
from dlengine.ledger.ledger import Ledger, queued_rows
from dlengine.ledger.models import NewJob, NewObject
from dlengine.supervisor import sizing

KIB = 1024


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    base = load_settings({"DLENGINE_HOME": str(tmp_path / "home")})
    return dataclasses.replace(base, workers_per_mountpath=4, threads_per_worker=8, chunk_size=1 << 20)


def test_one_object_wants_one_worker(settings: Settings) -> None:
    assert sizing.wanted(settings, [(1, None)], 1) == {1: 1}
    assert sizing.spares(settings, [(1, None)]) == 1


def test_nothing_queued_wants_no_worker(settings: Settings) -> None:
    assert sizing.wanted(settings, [], 1) == {}
    assert sizing.spares(settings, []) == 0


def test_unknown_and_large_sizes_want_a_worker_each_up_to_the_pools_size(settings: Settings) -> None:
    """A few links of unknown size may be large files: the claim shares
    them one to a worker, so each gets its worker (and core) as before."""
    assert sizing.wanted(settings, [(1, None)] * 3, 1) == {1: 3}
    assert sizing.wanted(settings, [(1, 64 << 20), (1, 1 << 20)], 1) == {1: 2}  # (chunk_size and up: large)
    assert sizing.wanted(settings, [(1, None)] * 9, 1) == {1: 4}
    assert sizing.spares(settings, [(1, None)] * 9) == 4


def test_small_objects_want_a_worker_for_each_batch(settings: Settings) -> None:
    """Known to be small: a worker's threads (8) of them at once."""
    assert sizing.wanted(settings, [(1, 10 * KIB)] * 8, 1) == {1: 1}
    assert sizing.wanted(settings, [(1, 10 * KIB)] * 9, 1) == {1: 2}
    assert sizing.wanted(settings, [(1, 10 * KIB)] * 9 + [(1, None)], 1) == {1: 3}


def test_each_mountpath_is_counted_apart(settings: Settings) -> None:
    queued = [(1, None), (2, None), (2, None)]
    assert sizing.wanted(settings, queued, 2) == {1: 1, 2: 2}
    two = dataclasses.replace(settings, mountpaths=(Path("/a"), Path("/b")))
    assert sizing.spares(two, queued) == 3


def test_no_count_or_more_than_the_limit_wants_every_worker(settings: Settings) -> None:
    assert sizing.wanted(settings, None, 1) is None
    assert sizing.spares(settings, None) == 4
    over = [(1, 10 * KIB)] * (sizing.limit(settings, 1) - 1)  # (4 workers x 8 threads: full)
    assert sizing.wanted(settings, over, 1) == {1: 4}
    assert sizing.wanted(settings, [*over, (1, 10 * KIB)], 1) is None


def _job(conn: sqlite3.Connection, count: int, *, dispatched: bool = True, sizes: int | None = None) -> str:
    record = NewJob(jobs.new_job_id(), "multi", "test", "ais", "", "b", "{}")
    if sizes is not None:
        listed = [NewObject(f"k{i}", f"s3://src/k{i}", size=sizes) for i in range(count)]
        return jobs.create_listed_job(conn, record, listed, lambda _name: "/mp")
    objects = ((f"o{i}", f"http://h/o{i}") for i in range(count))
    return jobs.create_job(conn, record, objects, lambda _name: "/mp", dispatched=dispatched)


def test_the_ledger_counts_pending_and_running_rows_of_active_jobs(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "ledger.db")
    conn = ledger.connection
    assert ledger.queued(10) == []
    links = _job(conn, 3)
    _job(conn, 2, sizes=5 * KIB)
    mp = ledger.mountpath_ids(["/mp"])["/mp"]
    assert sorted(ledger.queued(10) or [], key=str) == [(mp, 5 * KIB)] * 2 + [(mp, None)] * 3
    assert len(claims.claim(conn, mp, "w1", 2, 30)) == 2  # running rows still count
    assert len(ledger.queued(10) or []) == 5
    assert len(ledger.queued(4) or []) == 4  # counting stops at the limit
    assert ledger.abort(links)  # (its running rows are stopping: no worker wanted for them)
    assert sorted(ledger.queued(10) or [], key=str) == [(mp, 5 * KIB)] * 2


def test_rows_still_to_be_dispatched_are_no_count(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "ledger.db")
    _job(ledger.connection, 0, dispatched=False)  # (a range or a listing the dispatcher fills in)
    assert ledger.queued(10) is None
    assert queued_rows(tmp_path / "ledger.db", 10) is None


def test_before_the_fork_a_missing_ledger_is_idle_and_a_foreign_file_is_doubt(tmp_path: Path) -> None:
    assert queued_rows(tmp_path / "none.db", 10) == []
    (tmp_path / "other.db").write_bytes(b"not a database" * 100)
    assert queued_rows(tmp_path / "other.db", 10) is None
    plain = sqlite3.connect(tmp_path / "plain.db")
    plain.execute("CREATE TABLE t (x)")
    plain.close()
    assert queued_rows(tmp_path / "plain.db", 10) is None  # (not this schema)
    conn = db.connect(tmp_path / "ledger.db")
    _job(conn, 1)
    conn.close()
    assert len(queued_rows(tmp_path / "ledger.db", 10) or []) == 1

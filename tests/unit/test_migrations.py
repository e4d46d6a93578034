"""Migrations: a ledger from every older version, holding data, migrates to
the schema a fresh ledger has, and keeps its rows and counters."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from dlengine.ledger import db
from dlengine.ledger.ledger import Ledger
from dlengine.ledger.models import Outcome
from dlengine.ledger.states import ObjectState
from tests.ledger_checks import check_counters


def _schema(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    """Every table, index and trigger with its normalized SQL."""
    rows = conn.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type, name")
    return [(r[0], r[1], " ".join(r[2].split())) for r in rows]


def _columns(conn: sqlite3.Connection) -> dict[str, list[tuple[str, str, int, object]]]:
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t: [(c[1], c[2], c[3], c[4]) for c in conn.execute(f"PRAGMA table_info({t})")] for t in sorted(tables)}


def _old_ledger(path: Path, version: int) -> None:
    """A ledger at ``version`` holding a job with objects in every state."""
    conn = sqlite3.connect(path, isolation_level=None)
    for number, sql in db._migrations():
        if number <= version:
            db._run_script(conn, sql)
            conn.execute(f"PRAGMA user_version = {number}")
    conn.execute("INSERT INTO mountpaths (id, path) VALUES (1, '/mp')")
    conn.execute(
        "INSERT INTO jobs (seq, id, type, description, provider, bucket, spec, created_time)"
        " VALUES (1, 'dnl-old', 'multi', 'old job', 'ais', 'b', '{}', 1.0)"
    )
    for i, state in enumerate(["pending", "running", "done", "skipped", "failed", "aborted"]):
        conn.execute(
            "INSERT INTO objects (job, name, link, mountpath) VALUES (1, ?, ?, 1)", (f"o{i}", f"http://h/o{i}")
        )
        conn.execute("UPDATE jobs SET pending_cnt = pending_cnt + 1, total = total + 1 WHERE seq = 1")
        conn.execute("UPDATE objects SET size = 10, state = ? WHERE name = ?", (state, f"o{i}"))
    if version >= 2:
        conn.execute("UPDATE jobs SET scheduled_cnt = total")
    if version >= 8:  # no triggers move the counters since 0008: set them as the transitions would have
        conn.execute(
            "UPDATE jobs SET pending_cnt = 1, running_cnt = 1, done_cnt = 1, skipped_cnt = 1, failed_cnt = 1,"
            " aborted_cnt = 1, bytes_done = 20, bytes_total = 60 WHERE seq = 1"
        )
    conn.execute(
        "INSERT INTO catalog (provider, bucket, name, size, mountpath, source, stored_time)"
        " VALUES ('ais', 'b', 'o2', 10, '/mp', 'http://h/o2', 2.0)"
    )
    conn.close()


@pytest.mark.parametrize("version", range(1, db.latest_version()))
def test_a_ledger_with_data_migrates_to_the_fresh_schema(tmp_path: Path, version: int) -> None:
    fresh = db.connect(tmp_path / "fresh.db")
    _old_ledger(tmp_path / "old.db", version)
    migrated = db.connect(tmp_path / "old.db")
    assert migrated.execute("PRAGMA user_version").fetchone()[0] == db.latest_version()
    assert _schema(migrated) == _schema(fresh)
    assert _columns(migrated) == _columns(fresh)
    ledger = Ledger(migrated)
    job = ledger.job("dnl-old")
    assert (job.total, job.done_cnt, job.running_cnt, job.bytes_done, job.bytes_total) == (6, 1, 1, 20, 60)
    check_counters(ledger)
    assert [e.name for e in ledger.catalog("ais", "", "b")] == ["o2"]
    assert len(ledger.home_id()) == 32  # a home id was given to the old home
    # the transitions of the migrated ledger keep its counters (per-row triggers before 0008, theirs after)
    (task,) = ledger.claim(1, "w", 10, 30.0)
    check_counters(ledger)
    ledger.report("w", [Outcome(task.id, ObjectState.DONE, size=7, mountpath="/mp")])
    assert ledger.give_back() != []  # the old running row
    check_counters(ledger)
    assert ledger.job("dnl-old").done_cnt == 2

"""The ledger on its own: schema, paging, claims, counters, leases."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from dlengine.errors import SpecError
from dlengine.ledger import claims, db, jobs
from dlengine.ledger.models import NewJob, NewObject, Outcome, Task
from dlengine.ledger.states import ObjectState
from tests.conftest import counters_match_rows as _counters_match_rows


def _job(conn: sqlite3.Connection, count: int, conns: int = 0, mountpath: str = "/mp") -> str:
    record = NewJob(jobs.new_job_id(), "range", "test", "ais", "", "b", "{}", conns=conns)
    objects = ((f"obj-{i}", f"http://h/obj-{i}") for i in range(count))
    return jobs.create_job(conn, record, objects, lambda _name: mountpath)


def _mp(conn: sqlite3.Connection, path: str = "/mp") -> int:
    with db.write(conn):
        return jobs.mountpath_ids(conn, [path])[path]


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    return db.connect(tmp_path / "ledger.db")


def test_fresh_schema_is_at_latest_version_and_wal(conn: sqlite3.Connection) -> None:
    assert conn.execute("PRAGMA user_version").fetchone()[0] == db.latest_version()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reopening_does_not_migrate_again(tmp_path: Path) -> None:
    first = db.connect(tmp_path / "l.db")
    job_id = _job(first, 3)
    again = db.connect(tmp_path / "l.db")
    assert jobs.job_row(again, job_id)["total"] == 3


def test_pages_and_counts(conn: sqlite3.Connection) -> None:
    job_id = _job(conn, jobs.PAGE_SIZE * 2 + 7)
    row = jobs.job_row(conn, job_id)
    assert row["total"] == row["pending_cnt"] == jobs.PAGE_SIZE * 2 + 7
    assert row["all_dispatched"] == 1
    _counters_match_rows(conn, job_id)


def test_duplicate_in_a_later_page_creates_nothing(conn: sqlite3.Connection) -> None:
    record = NewJob(jobs.new_job_id(), "multi", "d", "ais", "", "b", "{}")
    names = [f"n{i}" for i in range(jobs.PAGE_SIZE + 10)] + ["n3"]
    with pytest.raises(SpecError, match="n3"):
        jobs.create_job(conn, record, ((n, "http://h/" + n) for n in names), lambda _n: "/mp")
    assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM objects").fetchone()[0] == 0


def test_claim_respects_connection_limit_across_owners(conn: sqlite3.Connection) -> None:
    job_id = _job(conn, 20, conns=3)
    mp = _mp(conn)
    first = claims.claim(conn, mp, "owner-a", 10, 30)
    second = claims.claim(conn, mp, "owner-b", 10, 30)
    assert len(first) == 3 and second == []
    claims.report(conn, "owner-a", [Outcome(first[0].id, ObjectState.DONE, size=1, mountpath="/mp")])
    assert len(claims.claim(conn, mp, "owner-b", 10, 30)) == 1
    assert jobs.job_row(conn, job_id)["running_cnt"] == 3
    _counters_match_rows(conn, job_id)


def _listed_job(conn: sqlite3.Connection, sizes: list[int | None], conns: int = 0) -> str:
    record = NewJob(jobs.new_job_id(), "backend", "d", "aws", "", "bkt", "{}", conns=conns)
    listed = [NewObject(f"k{i}", f"s3://src/k{i}", size=size, etag=f'"e{i}"') for i, size in enumerate(sizes)]
    return jobs.create_listed_job(conn, record, listed, lambda _name: "/mp")


def test_a_weighed_claim_counts_large_objects_as_their_segments(conn: sqlite3.Connection) -> None:
    """Eight objects of 64 MiB (four segments each at the default
    threshold): a worker with 16 connections takes four of them, the next
    worker the other four (without weighing the first took all eight)."""
    mib = 1 << 20
    _listed_job(conn, [64 * mib] * 8)
    mp = _mp(conn)
    first = claims.claim(conn, mp, "a", 16, 30, threshold=64 * mib)
    second = claims.claim(conn, mp, "b", 16, 30, threshold=64 * mib)
    assert [t.name for t in first] == ["k0", "k1", "k2", "k3"]
    assert [t.name for t in second] == ["k4", "k5", "k6", "k7"]


def test_a_weighed_claim_of_two_workers_takes_its_share_of_rows_not_of_connections(
    conn: sqlite3.Connection,
) -> None:
    """The share of a job's rows (``sharers``) is in rows, the room in
    connections: of eight 64 MiB objects (four segments each), the first
    of two workers takes four, not the one that four connections (its
    share of rows read as connections) left room for."""
    mib = 1 << 20
    _listed_job(conn, [64 * mib] * 8)
    mp = _mp(conn)
    first = claims.claim(conn, mp, "a", 16, 30, threshold=64 * mib, sharers=2)
    second = claims.claim(conn, mp, "b", 16, 30, threshold=64 * mib, sharers=2)
    assert [t.name for t in first] == ["k0", "k1", "k2", "k3"]
    assert [t.name for t in second] == ["k4", "k5", "k6", "k7"]


def test_a_claim_takes_its_share_of_a_job_s_last_rows(conn: sqlite3.Connection) -> None:
    """Four links of unknown size and two workers: each takes two (the
    first no longer takes all four into its one loop); alone, one worker
    takes them all."""
    _listed_job(conn, [None] * 4)
    mp = _mp(conn)
    first = claims.claim(conn, mp, "a", 16, 30, sharers=2)
    second = claims.claim(conn, mp, "b", 16, 30, sharers=2)
    assert [t.name for t in first] == ["k0", "k1"] and [t.name for t in second] == ["k2", "k3"]
    _listed_job(conn, [None] * 3)
    assert len(claims.claim(conn, mp, "c", 16, 30)) == 3


def test_a_weighed_claim_takes_one_large_object_at_least_and_small_ones_as_one(conn: sqlite3.Connection) -> None:
    mib = 1 << 20
    _listed_job(conn, [1024 * mib, 10, 10, 1024 * mib, None, 10])
    mp = _mp(conn)
    # eight segments, more than the room of 3: taken alone
    assert [t.name for t in claims.claim(conn, mp, "a", 3, 30, threshold=64 * mib)] == ["k0"]
    # two small ones (1 each), then the large one while the room is not used up
    assert [t.name for t in claims.claim(conn, mp, "b", 3, 30, threshold=64 * mib)] == ["k1", "k2", "k3"]
    # unknown sizes count as one
    assert [t.name for t in claims.claim(conn, mp, "c", 3, 30, threshold=64 * mib)] == ["k4", "k5"]


def test_a_job_with_a_connection_limit_is_not_weighed(conn: sqlite3.Connection) -> None:
    """Such a job's objects are never segmented (one connection each)."""
    mib = 1 << 20
    _listed_job(conn, [64 * mib] * 6, conns=5)
    assert len(claims.claim(conn, _mp(conn), "a", 16, 30, threshold=64 * mib)) == 5


def test_claim_only_own_mountpath_and_oldest_job_first(conn: sqlite3.Connection) -> None:
    old = _job(conn, 2, mountpath="/mp")
    _job(conn, 2, mountpath="/other")
    new = _job(conn, 2, mountpath="/mp")
    tasks = claims.claim(conn, _mp(conn), "o", 3, 30)
    assert [t.job_id for t in tasks] == [old, old, new]


def test_a_busy_job_does_not_starve_a_newer_one(conn: sqlite3.Connection) -> None:
    slow = _job(conn, 50)
    mp = _mp(conn)
    assert {t.job_id for t in claims.claim(conn, mp, "o", 8, 30)} == {slow}  # all threads busy on it
    fresh = _job(conn, 5)
    # a thread frees up: it goes to the job with nothing running
    assert [t.job_id for t in claims.claim(conn, mp, "o", 1, 30)] == [fresh]


def test_report_finishes_job_and_fills_catalog(conn: sqlite3.Connection) -> None:
    job_id = _job(conn, 2)
    tasks = claims.claim(conn, _mp(conn), "o", 10, 30)
    outs = [Outcome(t.id, ObjectState.DONE, size=10, etag='"e"', mountpath="/mp") for t in tasks]
    assert claims.report(conn, "o", outs[:1]) == []
    assert claims.report(conn, "o", outs[1:]) == [job_id]
    row = jobs.job_row(conn, job_id)
    assert (row["state"], row["done_cnt"], row["bytes_done"]) == ("finished", 2, 20)
    names = [r[0] for r in conn.execute("SELECT name FROM catalog ORDER BY name")]
    assert names == ["obj-0", "obj-1"]


def test_a_claim_carries_the_catalogs_copy_of_each_object(conn: sqlite3.Connection) -> None:
    _job(conn, 3)
    tasks = claims.claim(conn, _mp(conn), "o", 10, 30)
    assert [t.stored for t in tasks] == [None, None, None]  # nothing stored yet
    done = [Outcome(t.id, ObjectState.DONE, size=10 + i, etag=f'"e{i}"', mountpath="/mp") for i, t in enumerate(tasks)]
    claims.report(conn, "o", done[:2])  # obj-0 and obj-1 stored, obj-2 not
    _job(conn, 3)  # the same names again, into the same bucket
    again = {t.name: t.stored for t in claims.claim(conn, _mp(conn), "o", 10, 30)}
    assert again["obj-2"] is None
    for i in (0, 1):
        stored = again[f"obj-{i}"]
        assert stored is not None and (stored.size, stored.etag, stored.source) == (
            10 + i,
            f'"e{i}"',
            f"http://h/obj-{i}",
        )


def test_a_claimed_task_carries_its_row_and_its_job(conn: sqlite3.Connection) -> None:
    """Every field of a Task, from the row and from its job (a claim builds
    them by position)."""
    record = NewJob(jobs.new_job_id(), "backend", "d", "aws", "ns", "bkt", "{}", conns=4, timeout=7.5)
    listed = [NewObject("a", "s3://src/a", size=5, etag='"e"', version="v1", checksum="md5:00")]
    jobs.create_listed_job(conn, record, listed, lambda _name: "/mp")
    (task,) = claims.claim(conn, _mp(conn), "o", 10, 30)
    expected = Task(
        id=task.id, job_id=record.id, job_seq=task.job_seq, name="a", link="s3://src/a", mountpath_id=_mp(conn),
        attempts=1, provider="aws", namespace="ns", bucket="bkt", timeout=7.5, bytes_per_hour=0, stored=None,
        job_type="backend", size=5, etag='"e"', version="v1", checksum="md5:00", connections=4,
    )  # fmt: skip
    assert task == expected
    assert vars(task) == vars(expected)  # (built without __init__: every field, nothing more)


def test_report_ignores_rows_no_longer_leased(conn: sqlite3.Connection) -> None:
    job_id = _job(conn, 1)
    (task,) = claims.claim(conn, _mp(conn), "dead-owner", 1, 30)
    assert claims.recover(conn, keep_owners=["someone-else"]) == [task.id]
    claims.report(conn, "dead-owner", [Outcome(task.id, ObjectState.DONE, size=1, mountpath="/mp")])
    row = jobs.job_row(conn, job_id)
    assert (row["pending_cnt"], row["done_cnt"]) == (1, 0)
    _counters_match_rows(conn, job_id)


def test_expired_leases_return_to_pending(conn: sqlite3.Connection) -> None:
    job_id = _job(conn, 2)
    claims.claim(conn, _mp(conn), "o", 2, lease_seconds=-1)
    assert len(claims.recover_expired(conn)) == 2
    assert jobs.job_row(conn, job_id)["pending_cnt"] == 2


def test_retry_outcome_waits_for_next_try(conn: sqlite3.Connection) -> None:
    _job(conn, 1)
    mp = _mp(conn)
    (task,) = claims.claim(conn, mp, "o", 1, 30)
    claims.report(conn, "o", [Outcome(task.id, ObjectState.PENDING, error="busy", next_try=time.time() + 60)])
    assert claims.claim(conn, mp, "o", 1, 30) == []


def test_abort_marks_queued_and_renew_reports_running(conn: sqlite3.Connection) -> None:
    job_id = _job(conn, 5)
    tasks = claims.claim(conn, _mp(conn), "o", 2, 30)
    assert jobs.abort_job(conn, job_id) is True
    assert claims.renew(conn, "o", 30, {}) == {t.id for t in tasks}
    claims.report(conn, "o", [Outcome(t.id, ObjectState.ABORTED) for t in tasks])
    row = jobs.job_row(conn, job_id)
    assert (row["state"], row["aborted_cnt"], row["running_cnt"]) == ("aborted", 5, 0)
    assert jobs.abort_job(conn, job_id) is False


def test_fatal_outcome_stops_the_job(conn: sqlite3.Connection) -> None:
    job_id = _job(conn, 4)
    (task,) = claims.claim(conn, _mp(conn), "o", 1, 30)
    claims.report(conn, "o", [Outcome(task.id, ObjectState.FAILED, error="disk full", fatal=True)])
    row = jobs.job_row(conn, job_id)
    assert (row["state"], row["error"], row["aborted_cnt"], row["failed_cnt"]) == ("aborted", "disk full", 3, 1)


def test_retry_job_requeues_failed_only(conn: sqlite3.Connection) -> None:
    job_id = _job(conn, 2)
    a, b = claims.claim(conn, _mp(conn), "o", 2, 30)
    claims.report(
        conn,
        "o",
        [Outcome(a.id, ObjectState.DONE, size=1, mountpath="/mp"), Outcome(b.id, ObjectState.FAILED, error="x")],
    )
    assert jobs.job_row(conn, job_id)["state"] == "finished"
    assert jobs.retry_job(conn, job_id) == 1
    row = jobs.job_row(conn, job_id)
    assert (row["state"], row["pending_cnt"], row["failed_cnt"], row["done_cnt"]) == ("pending", 1, 0, 1)


def test_expired_leases_of_live_owners_are_kept(conn: sqlite3.Connection) -> None:
    job_id = _job(conn, 2)
    mp = _mp(conn)
    claims.claim(conn, mp, "alive", 1, lease_seconds=-1)
    claims.claim(conn, mp, "dead", 1, lease_seconds=-1)
    assert len(claims.recover_expired(conn, alive_owners=["alive"])) == 1
    row = jobs.job_row(conn, job_id)
    assert (row["running_cnt"], row["pending_cnt"]) == (1, 1)

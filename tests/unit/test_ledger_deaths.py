"""Objects whose worker died with them (dlengine/ledger/claims.py
``recover_dead``): every row a dying worker held counts a death, a row with
deaths is claimed alone and only by a claimer that holds nothing, and the
one its worker died with alone DLENGINE_ATTEMPTS times fails (code
``worker``); the other ways rows go back count nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from dlengine.ledger import claims, db, jobs
from dlengine.ledger.models import NewJob, Outcome
from dlengine.ledger.states import ObjectState
from tests.conftest import counters_match_rows

LIMIT = 3


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    return db.connect(tmp_path / "ledger.db")


def _job(conn: sqlite3.Connection, count: int, conns: int = 0) -> str:
    record = NewJob(jobs.new_job_id(), "range", "test", "ais", "", "b", "{}", conns=conns)
    return jobs.create_job(conn, record, ((f"o{i}", f"http://h/o{i}") for i in range(count)), lambda _n: "/mp")


def _mp(conn: sqlite3.Connection) -> int:
    with db.write(conn):
        return jobs.mountpath_ids(conn, ["/mp"])["/mp"]


def _rows(conn: sqlite3.Connection) -> dict[str, tuple[str, int]]:
    return {r[0]: (r[1], r[2]) for r in conn.execute("SELECT name, state, deaths FROM objects")}


def _claim(conn: sqlite3.Connection, owner: str, limit: int = 10, idle: bool = True) -> list[str]:
    return [t.name for t in claims.claim(conn, _mp(conn), owner, limit, 30, idle=idle)]


def test_every_row_of_a_dead_worker_counts_a_death_and_is_claimed_alone(conn: sqlite3.Connection) -> None:
    job_id = _job(conn, 5)
    assert _claim(conn, "w1", 3) == ["o0", "o1", "o2"]
    back, failed = claims.recover_dead(conn, {"w1": "killed by SIGKILL"}, LIMIT)
    assert len(back) == 3 and failed == []
    assert _rows(conn) == {"o0": ("pending", 1), "o1": ("pending", 1), "o2": ("pending", 1),
                           "o3": ("pending", 0), "o4": ("pending", 0)}  # fmt: skip
    assert jobs.job_row(conn, job_id)["deaths"] == 3
    assert _claim(conn, "busy", idle=False) == ["o3", "o4"]  # one holding rows takes none of them
    assert _claim(conn, "w2") == ["o0"]  # an idle one takes one, and nothing else
    assert _claim(conn, "w3") == ["o1"]
    (task,) = claims.claim(conn, _mp(conn), "w4", 10, 30, idle=True)
    assert (task.name, task.deaths, task.attempts) == ("o2", 1, 2)
    assert _claim(conn, "w5") == []
    counters_match_rows(conn, job_id)


def test_the_row_its_worker_died_with_alone_fails_at_the_limit(conn: sqlite3.Connection) -> None:
    job_id = _job(conn, 2)
    _claim(conn, "w0", 2)
    claims.recover_dead(conn, {"w0": "killed by SIGKILL"}, LIMIT)  # o0 and o1: one death each
    how = "exit code 1; its last lines on stderr: GET https://h/o0?X-Amz-Signature=0123456789abcdef"
    assert _claim(conn, "w1") == ["o0"]
    assert claims.recover_dead(conn, {"w1": how}, LIMIT) == ([_id(conn, "o0")], [])
    assert _claim(conn, "w2") == ["o1"]  # the fewest deaths first: the innocent one, alone, then done
    claims.report(conn, "w2", [Outcome(_id(conn, "o1"), ObjectState.DONE, size=1, mountpath="/mp")])
    assert _claim(conn, "w3") == ["o0"]
    assert claims.recover_dead(conn, {"w3": how}, LIMIT) == ([], [_id(conn, "o0")])
    row = conn.execute("SELECT * FROM objects WHERE name = 'o0'").fetchone()
    assert (row["state"], row["deaths"], row["error_code"], row["owner"]) == ("failed", 3, "worker", None)
    assert row["error"].startswith("its worker died 3 times while downloading it (the last time: exit code 1")
    assert "0123456789abcdef" not in row["error"]  # redacted as every stored error
    job = jobs.job_row(conn, job_id)
    assert (job["state"], job["done_cnt"], job["failed_cnt"]) == ("finished", 1, 1)
    counters_match_rows(conn, job_id)


def _id(conn: sqlite3.Connection, name: str) -> int:
    return int(conn.execute("SELECT id FROM objects WHERE name = ?", (name,)).fetchone()[0])


def test_rows_at_the_limit_not_alone_go_back(conn: sqlite3.Connection) -> None:
    """Only a death alone can blame an object: one with others goes back."""
    _job(conn, 2)
    _claim(conn, "w0", 2)
    back, failed = claims.recover_dead(conn, {"w0": "killed by SIGKILL"}, 1)
    assert (len(back), failed) == (2, [])
    assert _claim(conn, "w1") == ["o0"]
    back, failed = claims.recover_dead(conn, {"w1": "killed by SIGKILL"}, 1)
    assert (back, failed) == ([], [_id(conn, "o0")])


def test_other_ways_back_count_no_death(conn: sqlite3.Connection) -> None:
    """A supervisor's recovery (after its own death, or when it stops),
    an expired lease, a worker's own release: no death."""
    job_id = _job(conn, 4)
    _claim(conn, "w0", 1)
    claims.recover(conn)
    _claim(conn, "w1", 1)
    claims.recover(conn, keep_owners=["someone"])
    claims.claim(conn, _mp(conn), "w2", 1, lease_seconds=-1)
    claims.recover_expired(conn)
    (task,) = claims.claim(conn, _mp(conn), "w3", 1, 30)
    claims.report(conn, "w3", [Outcome(task.id, ObjectState.PENDING, release=True)])
    assert claims.recover_dead(conn, {}, LIMIT) == ([], [])
    assert claims.recover_dead(conn, {"w-held-nothing": "killed by SIGKILL"}, LIMIT) == ([], [])
    assert {deaths for _state, deaths in _rows(conn).values()} == {0}
    assert jobs.job_row(conn, job_id)["deaths"] == 0
    assert _claim(conn, "w4", 10, idle=False) == ["o0", "o1", "o2", "o3"]
    counters_match_rows(conn, job_id)


def test_a_dead_row_of_an_aborted_job_ends_aborted(conn: sqlite3.Connection) -> None:
    job_id = _job(conn, 1)
    _claim(conn, "w0")
    claims.recover_dead(conn, {"w0": "killed by SIGKILL"}, 2)
    _claim(conn, "w1")
    assert jobs.abort_job(conn, job_id)
    assert claims.recover_dead(conn, {"w1": "killed by SIGKILL"}, 2) == ([], [])  # at the limit, alone
    assert _rows(conn) == {"o0": ("aborted", 2)}
    counters_match_rows(conn, job_id)


def test_a_dead_row_keeps_the_connection_limit(conn: sqlite3.Connection) -> None:
    _job(conn, 2, conns=1)
    _claim(conn, "w0", 1)
    claims.recover_dead(conn, {"w0": "killed by SIGKILL"}, LIMIT)
    _claim(conn, "w1", 1, idle=False)  # o1 takes the job's one connection
    assert _claim(conn, "w2") == []


def test_retry_gives_a_failed_row_its_attempts_and_keeps_it_alone(conn: sqlite3.Connection) -> None:
    job_id = _job(conn, 2)
    _claim(conn, "w0", 2)
    claims.recover_dead(conn, {"w0": "killed by SIGKILL"}, 1)
    _claim(conn, "w1")
    claims.recover_dead(conn, {"w1": "killed by SIGKILL"}, 1)  # o0 failed
    _claim(conn, "w2")
    claims.report(conn, "w2", [Outcome(_id(conn, "o1"), ObjectState.DONE, size=1, mountpath="/mp")])
    assert jobs.retry_job(conn, job_id) == 1
    assert _rows(conn)["o0"] == ("pending", 1)
    assert _claim(conn, "busy", idle=False) == []
    assert _claim(conn, "w3") == ["o0"]
    counters_match_rows(conn, job_id)

"""The ledger as one object: its methods are the state transitions.

Every method is one statement or one transaction (``BEGIN IMMEDIATE``) and
takes and returns typed records (``models``), never a raw ``sqlite3.Row``:
the rest of dlengine never writes SQL. The statements themselves live, by
name, in ``jobs`` (job lifecycle, catalog, dispatching) and ``claims`` (the
worker side), which the worker processes still call
with their own connection (``claims.claim``, ``claims.report``,
``claims.renew``, ``claims.recover``); the Dask executor uses the facade.

    submit         create_job ───────────────► pending
    worker         claim ► running ► report ─► done | skipped | failed
                            │  renew (lease, progress, aborted?)
                            └► give_back ────► pending (aborted if the job was)
    user           abort / retry / remove
    supervisor     finish, give_back_expired, dispatch_page
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from dlengine import records
from dlengine.errors import ErrorCode, StateError
from dlengine.ledger import claims, db, jobs
from dlengine.ledger.counters import Counts, count_moves
from dlengine.ledger.models import CatalogEntry, JobRecord, NewJob, NewObject, ObjectRow, Outcome, Task
from dlengine.ledger.states import ACTIVE_JOB_STATES, ObjectState

__all__ = ["Ledger", "queued_rows", "record", "surely_idle"]

R = TypeVar("R")

# -- named SQL of the reads the facade adds (writes live in jobs / claims)

_UNDISPATCHED_SQL = f"SELECT * FROM jobs WHERE all_dispatched = 0 AND state IN {ACTIVE_JOB_STATES!r} ORDER BY seq"
# an aborted job counts as busy until its workers have stopped its downloads
_BUSY_JOBS_SQL = f"SELECT id FROM jobs WHERE state IN {ACTIVE_JOB_STATES!r} OR running_cnt > 0"
# the rows queued for workers (pending, or running: pending again after a
# restart) of active jobs: their mountpath and size, which the pools are
# sized by (supervisor/sizing.py); read through the partial indexes
# objects_todo and objects_running (no other row), LIMIT where every pool
# would be full anyway
_QUEUED_SQL = (
    "SELECT o.mountpath, o.size FROM jobs j JOIN objects o ON o.job = j.seq AND o.state = 'pending'"
    f" WHERE j.state IN {ACTIVE_JOB_STATES!r}"
    " UNION ALL SELECT o.mountpath, o.size FROM jobs j JOIN objects o ON o.job = j.seq AND o.state = 'running'"
    f" WHERE j.state IN {ACTIVE_JOB_STATES!r} LIMIT ?"
)
# an active job with rows still to come from the dispatcher (a range, a listing)
_UNDISPATCHED_ANY_SQL = f"SELECT 1 FROM jobs WHERE all_dispatched = 0 AND state IN {ACTIVE_JOB_STATES!r} LIMIT 1"
_ENDED_SINCE_SQL = "SELECT * FROM jobs WHERE finished_time >= ?"
_JOB_BY_ID_SQL = "SELECT * FROM jobs WHERE id IN ({})"
_OBJECT_STATE_SQL = "SELECT state FROM objects WHERE id = ?"
_ABORTED_WORK_SQL = (
    "SELECT o.id, m.path FROM objects o JOIN mountpaths m ON m.id = o.mountpath WHERE o.job = ? AND o.state = 'aborted'"
)
_CATALOG_SQL = (
    "SELECT * FROM catalog WHERE provider = ? AND namespace = ? AND bucket = ? AND name >= ?"
    " AND instr(mountpath, '://') = 0 ORDER BY name"
)
_JOB_STILL_ACTIVE_SQL = f"SELECT 1 FROM jobs WHERE seq = ? AND state IN {ACTIVE_JOB_STATES!r}"
_SET_CURSOR_SQL = "UPDATE jobs SET cursor = ? WHERE seq = ?"
# a backend job's total is -1 (AIStore's "unknown") until its listing ended
_DISPATCHED_SQL = (
    "UPDATE jobs SET all_dispatched = 1, total = CASE WHEN total < 0 THEN scheduled_cnt ELSE total END WHERE seq = ?"
)
_OBJECTS_SQL = "SELECT * FROM objects WHERE job = ? AND {} {} LIMIT ?"
# mountpaths holding pending objects of active jobs (the partial index
# objects_todo answers each (job, mountpath) pair without a scan)
_PLACED_MOUNTPATHS_SQL = (
    "SELECT m.id, m.path FROM mountpaths m WHERE EXISTS (SELECT 1 FROM jobs j JOIN objects o"
    " ON o.job = j.seq AND o.mountpath = m.id AND o.state = 'pending'"
    f" WHERE j.state IN {ACTIVE_JOB_STATES!r}) ORDER BY m.id"
)
_RUNNING_BYTES_SQL = "SELECT coalesce(sum(bytes_done), 0) FROM objects WHERE job = ? AND state = 'running'"
_BUCKETS_SQL = (
    "SELECT b.provider, b.namespace, b.name, count(c.name), coalesce(sum(c.size), 0) FROM buckets b"
    " LEFT JOIN catalog c ON c.provider = b.provider AND c.namespace = b.namespace AND c.bucket = b.name"
    " GROUP BY b.provider, b.namespace, b.name ORDER BY b.provider, b.namespace, b.name"
)
_BUSY_JOBS_OF_BUCKET_SQL = (
    "SELECT id FROM jobs WHERE provider = ? AND namespace = ? AND bucket = ?"
    f" AND (state IN {ACTIVE_JOB_STATES!r} OR running_cnt > 0)"
)
_BUCKET_CATALOG_SQL = "SELECT * FROM catalog WHERE provider = ? AND namespace = ? AND bucket = ?"
_DELETE_CATALOG_SQL = "DELETE FROM catalog WHERE provider = ? AND namespace = ? AND bucket = ?"
_DELETE_BUCKET_SQL = "DELETE FROM buckets WHERE provider = ? AND namespace = ? AND name = ?"
_FAIL_PLACED_SQL = (
    "UPDATE objects SET state = 'failed', error = ?, error_code = ?, end_time = ?"
    f" WHERE mountpath = ? AND state = 'pending' AND job IN (SELECT seq FROM jobs WHERE state IN {ACTIVE_JOB_STATES!r})"
    " RETURNING job, state"
)


def record(cls: type[R], row: sqlite3.Row) -> R:
    """A typed record of a row: the fields of ``cls`` by column name."""
    values: dict[str, Any] = {name: row[name] for name in records.names(cls)}
    return cls(**values)


def _job(row: sqlite3.Row) -> JobRecord:
    values: dict[str, Any] = {name: row[name] for name in records.names(JobRecord)}
    values["all_dispatched"] = bool(values["all_dispatched"])
    return JobRecord(**values)


def _queued(conn: sqlite3.Connection, limit: int) -> list[tuple[int, int | None]] | None:
    if conn.execute(_UNDISPATCHED_ANY_SQL).fetchone() is not None:
        return None
    return [(int(r[0]), r[1]) for r in conn.execute(_QUEUED_SQL, (limit,))]


def surely_idle(path: Path) -> bool:
    """True only when the ledger at ``path`` surely holds no busy job
    (``Ledger.busy_job_ids`` empty): none there yet, or every job ended.
    Asked over a plain connection, nothing created or migrated; a question
    SQLite cannot answer at once (locked past a second, not a ledger of this
    schema) is False."""
    return _ask_plainly(path, lambda conn: conn.execute(_BUSY_JOBS_SQL + " LIMIT 1").fetchone() is None, True, False)


def queued_rows(path: Path, limit: int) -> list[tuple[int, int | None]] | None:
    """``Ledger.queued`` of the ledger at ``path`` (empty: none there yet),
    asked over a plain connection, nothing created or migrated; a question
    SQLite cannot answer at once (locked past a second, not a ledger of this
    schema) is None, as rows still to be dispatched are."""
    none_yet: list[tuple[int, int | None]] = []
    return _ask_plainly(path, lambda conn: _queued(conn, limit), none_yet, None)


def _ask_plainly(path: Path, question: Callable[[sqlite3.Connection], R], missing: R, unanswered: R) -> R:
    """``question`` asked of the ledger at ``path`` over a plain connection,
    nothing created or migrated (before the fork of spares): ``missing``
    when there is no ledger yet, ``unanswered`` when SQLite cannot answer
    at once (locked past a second, not a ledger of this schema)."""
    if not path.exists():
        return missing
    try:
        conn = sqlite3.connect(path, timeout=1.0)
        try:
            return question(conn)
        finally:
            conn.close()
    except sqlite3.Error:
        return unanswered


class Ledger:
    """One connection to one home's ledger. Not thread-safe: one per thread
    (or process); SQLite's lock orders the writers of every process."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @classmethod
    def open(cls, path: Path) -> Ledger:
        """Open (creating and migrating if needed) the ledger at ``path``."""
        return cls(db.connect(path))

    @classmethod
    def empty(cls) -> Ledger:
        """An empty ledger in memory (``db.connect_empty``): a home that
        has none yet, as a command that only reads sees it."""
        return cls(db.connect_empty())

    def close(self) -> None:
        self._conn.close()

    @property
    def connection(self) -> sqlite3.Connection:
        """For the worker side that still takes a connection (``claims``)."""
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[Ledger]:
        """Several transitions as one (a dispatched page and its cursor)."""
        with db.write(self._conn):
            yield self

    # -- the home

    def home_id(self) -> str:
        return jobs.home_id(self._conn)

    def mountpath_ids(self, paths: Iterable[str]) -> dict[str, int]:
        """Ids of these mountpaths, registering new ones (one transaction)."""
        with db.write(self._conn):
            return jobs.mountpath_ids(self._conn, paths)

    def queued(self, limit: int) -> list[tuple[int, int | None]] | None:
        """(mountpath id, size or None) of at most ``limit`` rows queued for
        workers (pending or running) in active jobs; None while an active
        job has rows still to be dispatched (how many, and where, is not
        known yet)."""
        return _queued(self._conn, limit)

    def placed_mountpaths(self) -> list[tuple[int, str]]:
        """(id, path) of every mountpath that pending objects of active jobs
        are placed on: the supervisor must serve each of them."""
        return [(int(r[0]), str(r[1])) for r in self._conn.execute(_PLACED_MOUNTPATHS_SQL)]

    def fail_placed(self, mountpath_id: int, reason: str, code: ErrorCode) -> int:
        """Fail the pending objects of active jobs placed on a mountpath that
        cannot be served; returns how many."""
        with db.write(self._conn):
            rows = self._conn.execute(_FAIL_PLACED_SQL, (reason, code.value, time.time(), mountpath_id)).fetchall()
            counts = Counts()
            count_moves(counts, ((r[0], r[1]) for r in rows), ObjectState.PENDING.value)
            counts.flush(self._conn)
            return len(rows)

    # -- submission and the user's transitions

    def create_job(
        self,
        job: NewJob,
        objects: Iterator[tuple[str, str]],
        place: Callable[[str], str],
        *,
        dispatched: bool = True,
        total: int = 0,
    ) -> str:
        return jobs.create_job(self._conn, job, objects, place, dispatched=dispatched, total=total)

    def create_listed_job(
        self,
        job: NewJob,
        objects: Sequence[NewObject],
        place: Callable[[str], str],
        *,
        cursor: str | None = None,
        dispatched: bool = True,
    ) -> str:
        """A job whose objects were listed at submission (some already
        skipped); finished at once when nothing is left to download."""
        return jobs.create_listed_job(self._conn, job, objects, place, cursor=cursor, dispatched=dispatched)

    def record_listing(self, key: str, snapshot: str, job_ids: Sequence[str], files: int) -> None:
        """Remember that the rows of these jobs are listing ``key`` at
        ``snapshot`` (a commit): a re-run at the same snapshot lists nothing."""
        with db.write(self._conn):
            jobs.record_listing(self._conn, key, snapshot, job_ids, files)

    def listing(self, key: str, snapshot: str) -> list[NewObject] | None:
        """The objects of listing ``key`` as recorded at ``snapshot``; None
        if it was not, or another snapshot was recorded since, or one of
        its jobs was removed."""
        return jobs.listed_at(self._conn, key, snapshot)

    def abort(self, job_id: str, reason: str | None = None) -> bool:
        """Abort a job and its queued objects; False if it had ended."""
        return jobs.abort_job(self._conn, job_id, reason)

    def remove(self, job_id: str) -> None:
        jobs.remove_job(self._conn, job_id)

    def retry(self, job_id: str) -> int:
        """Queue again every object of an ended job that did not finish."""
        return jobs.retry_job(self._conn, job_id)

    def finish(self, seqs: Iterable[int] | None = None) -> list[str]:
        """Mark finished the active jobs with nothing left to do."""
        return jobs.finish_jobs(self._conn, seqs)

    def ensure_bucket(self, provider: str, namespace: str, name: str) -> bool:
        with db.write(self._conn):
            return jobs.ensure_bucket(self._conn, provider, namespace, name)

    def bucket_exists(self, provider: str, namespace: str, name: str) -> bool:
        return jobs.bucket_exists(self._conn, provider, namespace, name)

    def buckets(self) -> list[tuple[str, str, str, int, int]]:
        """(provider, namespace, name, objects, bytes) of every bucket."""
        return [(str(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4])) for r in self._conn.execute(_BUCKETS_SQL)]

    def bucket_contents(self, provider: str, namespace: str, name: str) -> list[CatalogEntry]:
        """Everything the catalog holds of a bucket (to delete its files),
        refused with StateError while a job of the bucket is active."""
        key = (provider, namespace, name)
        self._check_idle(key)
        return [record(CatalogEntry, r) for r in self._conn.execute(_BUCKET_CATALOG_SQL, key)]

    def _check_idle(self, key: tuple[str, str, str]) -> None:
        busy = [str(r[0]) for r in self._conn.execute(_BUSY_JOBS_OF_BUCKET_SQL, key)]
        if busy:
            raise StateError(f"bucket {key[0]}://{key[2]} has active job(s) {', '.join(busy)}: abort or wait first")

    def remove_bucket(self, provider: str, namespace: str, name: str) -> None:
        """Forget a bucket and its catalog (its files are already gone), in
        one transaction that checks again that no job of it is active."""
        key = (provider, namespace, name)
        with db.write(self._conn):
            self._check_idle(key)
            self._conn.execute(_DELETE_CATALOG_SQL, key)
            self._conn.execute(_DELETE_BUCKET_SQL, key)

    # -- reading jobs

    def running_bytes(self, seq: int) -> int:
        """Bytes written so far by a job's objects in flight (their workers
        record it with each lease renewal)."""
        return int(self._conn.execute(_RUNNING_BYTES_SQL, (seq,)).fetchone()[0])

    def job(self, job_id: str) -> JobRecord:
        """The job; NotFoundError if there is none."""
        return _job(jobs.job_row(self._conn, job_id))

    def jobs(self, regex: str | None = None, active_only: bool = False) -> list[JobRecord]:
        return [_job(r) for r in jobs.list_jobs(self._conn, regex, active_only)]

    def busy_job_ids(self) -> list[str]:
        """Jobs still active, or aborted with downloads still stopping."""
        return [r[0] for r in self._conn.execute(_BUSY_JOBS_SQL)]

    def jobs_by_id(self, ids: Iterable[str]) -> list[JobRecord]:
        wanted = list(ids)
        if not wanted:
            return []
        sql = _JOB_BY_ID_SQL.format(",".join("?" * len(wanted)))
        return [_job(r) for r in self._conn.execute(sql, wanted)]

    def ended_since(self, when: float) -> list[JobRecord]:
        return [_job(r) for r in self._conn.execute(_ENDED_SINCE_SQL, (when,))]

    def request_headers(self, job_id: str) -> dict[str, str]:
        """The job's non-secret request headers, as stored in its spec."""
        return jobs.request_headers(self._conn, job_id)

    def objects(self, seq: int, states: Sequence[str], limit: int, newest_first: bool = False) -> list[ObjectRow]:
        """Objects of a job in these states (status lists)."""
        order = "ORDER BY end_time DESC" if newest_first else ""
        # states as literals (from the enum, never user input): SQLite uses a
        # partial index only when the query's WHERE provably implies its own
        values = [repr(ObjectState(s).value) for s in states]
        where = f"state = {values[0]}" if len(values) == 1 else f"state IN ({','.join(values)})"
        sql = _OBJECTS_SQL.format(where, order)
        return [record(ObjectRow, r) for r in self._conn.execute(sql, (seq, limit))]

    def failures_by_code(self, seq: int) -> dict[str, int]:
        return jobs.failures_by_code(self._conn, seq)

    def object_state(self, row_id: int) -> str | None:
        row = self._conn.execute(_OBJECT_STATE_SQL, (row_id,)).fetchone()
        return None if row is None else str(row[0])

    def aborted_work(self, seq: int) -> list[tuple[int, str]]:
        """(row id, mountpath) of a job's aborted objects: their work files go."""
        return [(int(r[0]), str(r[1])) for r in self._conn.execute(_ABORTED_WORK_SQL, (seq,))]

    def catalog(self, provider: str, namespace: str, bucket: str, prefix: str = "") -> Iterator[CatalogEntry]:
        """The local copy of a bucket (not write-through objects), by name."""
        for row in self._conn.execute(_CATALOG_SQL, (provider, namespace, bucket, prefix)):
            if not row["name"].startswith(prefix):
                break
            yield record(CatalogEntry, row)

    # -- the worker side (also reachable through ``claims`` with a connection)

    def claim(self, mountpath_id: int, owner: str, limit: int, lease_seconds: float) -> list[Task]:
        """(The Dask executor's.) ``idle``: a row whose worker died with it
        comes alone, though this owner holds others: the supervisor is the
        owner of the cluster's rows, and no download can kill it (a Dask
        worker that dies loses a task, not the supervisor)."""
        return claims.claim(self._conn, mountpath_id, owner, limit, lease_seconds, idle=True)

    def report(self, owner: str, outcomes: Sequence[Outcome]) -> list[str]:
        return claims.report(self._conn, owner, outcomes)

    def renew(self, owner: str, lease_seconds: float, progress: dict[int, tuple[int, int | None]]) -> set[int]:
        return claims.renew(self._conn, owner, lease_seconds, progress)

    def give_back(self, keep_owners: Iterable[str] = ()) -> list[int]:
        """Running rows of owners not in ``keep_owners`` go back (pending,
        or aborted with their job)."""
        return claims.recover(self._conn, keep_owners)

    def give_back_dead(self, died: Mapping[str, str], limit: int) -> tuple[list[int], list[int]]:
        """Rows of workers that died (owner -> how), each counting a death;
        (ids given back, ids failed at their ``limit``-th death alone)."""
        return claims.recover_dead(self._conn, died, limit)

    def give_back_expired(self, alive_owners: Iterable[str] = ()) -> list[int]:
        """Rows whose lease ran out, of owners not known to be alive."""
        return claims.recover_expired(self._conn, alive_owners)

    # -- the dispatcher

    def undispatched(self) -> list[JobRecord]:
        """Active jobs whose objects are still being inserted, oldest first."""
        return [_job(r) for r in self._conn.execute(_UNDISPATCHED_SQL)]

    def dispatch_page(self, job: JobRecord, cursor: str, insert: Callable[[Ledger], None]) -> bool:
        """One page of a job's objects (``insert`` writes it through this
        ledger) and the cursor after it, in one transaction; False if the
        job ended meanwhile (nothing written)."""
        with db.write(self._conn):
            if self._conn.execute(_JOB_STILL_ACTIVE_SQL, (job.seq,)).fetchone() is None:
                return False
            insert(self)
            self._conn.execute(_SET_CURSOR_SQL, (cursor, job.seq))
        return True

    def end_dispatch(self, job: JobRecord, step: Callable[[Ledger], bool]) -> bool:
        """After the last page: one finishing ``step`` per transaction while
        it returns True (e.g. a sync's deletions), then the job is fully
        dispatched (and finished if nothing is left). True while there is
        more to do."""
        with db.write(self._conn):
            if self._conn.execute(_JOB_STILL_ACTIVE_SQL, (job.seq,)).fetchone() is None:
                return False
            if step(self):
                return True
            self._conn.execute(_DISPATCHED_SQL, (job.seq,))
            jobs.finish_jobs(self._conn, [job.seq])
        return False

    # inside dispatch_page / end_dispatch (a transaction is open)

    def insert_objects(self, seq: int, objects: Iterator[tuple[str, str]], place: Callable[[str], str]) -> int:
        return jobs.insert_objects(self._conn, seq, objects, place)

    def insert_listed(self, seq: int, objects: Sequence[NewObject], place: Callable[[str], str]) -> None:
        jobs.insert_listed(self._conn, seq, objects, place)

    def catalog_entries(
        self, provider: str, namespace: str, bucket: str, names: Sequence[str]
    ) -> dict[str, CatalogEntry]:
        found = jobs.catalog_entries(self._conn, provider, namespace, bucket, names)
        return {name: record(CatalogEntry, row) for name, row in found.items()}

    def vanished(
        self, job: JobRecord, prefix: str, suffix: str, link_prefix: str, limit: int = 1000
    ) -> list[CatalogEntry]:
        rows = jobs.vanished(self._conn, job, prefix, suffix, link_prefix, limit)
        return [record(CatalogEntry, r) for r in rows]

    def record_deleted(self, job: JobRecord, entries: Sequence[CatalogEntry]) -> None:
        jobs.record_deleted(self._conn, job, entries)

"""Job lifecycle in the ledger: create (objects in pages), status, list,
abort, remove, retry."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

from dlengine.errors import ErrorCode, NotFoundError, SpecError, StateError
from dlengine.ledger.counters import Counts
from dlengine.ledger.db import write
from dlengine.ledger.models import CatalogEntry, JobRecord, NewJob, NewObject
from dlengine.ledger.states import ACTIVE_JOB_STATES, JobState, ObjectState
from dlengine.redact import redact

PAGE_SIZE = 5000
ID_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def new_job_id() -> str:
    """``dnl-`` and 10 characters of ID_ALPHABET, each uniformly random
    (from ``os.urandom``: the secrets module imports random and hmac)."""
    whole = 256 - 256 % len(ID_ALPHABET)  # bytes of a last, partial round of the alphabet would bias it
    chars: list[str] = []
    while len(chars) < 10:
        chars.extend(ID_ALPHABET[b % len(ID_ALPHABET)] for b in os.urandom(16) if b < whole)
    return "dnl-" + "".join(chars[:10])


def mountpath_ids(conn: sqlite3.Connection, paths: Iterable[str]) -> dict[str, int]:
    """Ids of the given mountpaths, registering new ones."""
    ids = {}
    for path in paths:
        conn.execute("INSERT OR IGNORE INTO mountpaths (path) VALUES (?)", (path,))
        ids[path] = conn.execute("SELECT id FROM mountpaths WHERE path = ?", (path,)).fetchone()[0]
    return ids


def home_id(conn: sqlite3.Connection) -> str:
    """This home's identity (written into its mountpaths)."""
    return str(conn.execute("SELECT id FROM home").fetchone()[0])


def create_job(
    conn: sqlite3.Connection,
    job: NewJob,
    objects: Iterator[tuple[str, str]],
    place: Callable[[str], str],
    *,
    dispatched: bool = True,
    total: int = 0,
) -> str:
    """Insert a job and its objects (name, link) in one transaction.

    Objects arrive lazily and go in pages of PAGE_SIZE. ``place(name)``
    gives the mountpath path of an object. Duplicate names abort the whole
    insert: nothing is created. With ``dispatched=False`` the supervisor's
    dispatcher inserts the (remaining) objects later; ``total`` is the
    expected count, if known.
    """
    with write(conn):
        cur = conn.execute(
            _INSERT_JOB_SQL,
            (job.id, job.type, job.description, job.provider, job.namespace, job.bucket, job.spec,
             job.conns, job.bytes_per_hour, job.timeout, time.time(), total),
        )  # fmt: skip
        seq = int(cur.lastrowid or 0)
        ensure_bucket(conn, job.provider, job.namespace, job.bucket)
        insert_objects(conn, seq, objects, place)
        if dispatched:
            conn.execute("UPDATE jobs SET all_dispatched = 1 WHERE seq = ?", (seq,))
    return job.id


def create_listed_job(
    conn: sqlite3.Connection,
    job: NewJob,
    objects: Sequence[NewObject],
    place: Callable[[str], str],
    *,
    cursor: str | None = None,
    dispatched: bool = True,
) -> str:
    """Insert a job with objects already listed (some already skipped or
    failed) in one transaction; finished at once if none is left to do.
    Not ``dispatched`` (a sync still to run, whose deletions are rows too):
    its total is -1 until then, as every backend job's (AIStore's unknown)."""
    total = len(objects) if dispatched else -1
    with write(conn):
        cur = conn.execute(
            _INSERT_JOB_SQL,
            (job.id, job.type, job.description, job.provider, job.namespace, job.bucket, job.spec,
             job.conns, job.bytes_per_hour, job.timeout, time.time(), total),
        )  # fmt: skip
        seq = int(cur.lastrowid or 0)
        ensure_bucket(conn, job.provider, job.namespace, job.bucket)
        for start in range(0, len(objects), PAGE_SIZE):
            insert_listed(conn, seq, objects[start : start + PAGE_SIZE], place)
        conn.execute(_LISTED_JOB_SQL, (cursor, int(dispatched), seq))
        finish_jobs(conn, [seq])
    return job.id


_LISTED_JOB_SQL = "UPDATE jobs SET cursor = ?, all_dispatched = ? WHERE seq = ?"

_INSERT_JOB_SQL = (
    "INSERT INTO jobs (id, type, description, provider, namespace, bucket, spec, conns,"
    " bytes_per_hour, timeout, created_time, total) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
)


_RECORD_LISTING_SQL = "INSERT OR REPLACE INTO listings (key, snapshot, jobs, files, recorded) VALUES (?,?,?,?,?)"
_LISTING_SQL = "SELECT snapshot, jobs, files FROM listings WHERE key = ?"
# a sync's deletions are rows of its job too (done, with the reason as error): not listed objects
_LISTED_ROWS_SQL = (
    "SELECT o.name, o.link, o.size, o.etag, o.version, o.checksum, o.last_modified FROM objects o"
    " JOIN jobs j ON j.seq = o.job WHERE j.id IN ({}) AND NOT (o.state = 'done' AND o.error IS NOT NULL)"
    " ORDER BY o.name"
)


def record_listing(conn: sqlite3.Connection, key: str, snapshot: str, job_ids: Sequence[str], files: int) -> None:
    """The rows of ``job_ids`` (``files`` of them) are the listing ``key`` at ``snapshot``."""
    conn.execute(_RECORD_LISTING_SQL, (key, snapshot, json.dumps(list(job_ids)), files, time.time()))


def listed_at(conn: sqlite3.Connection, key: str, snapshot: str) -> list[NewObject] | None:
    """The objects of listing ``key`` if it was last recorded at
    ``snapshot`` and its rows are all still there (no job removed), by name;
    None otherwise."""
    row = conn.execute(_LISTING_SQL, (key,)).fetchone()
    if row is None or row["snapshot"] != snapshot:
        return None
    ids = [str(i) for i in json.loads(row["jobs"])]
    if not ids:
        return None
    rows = conn.execute(_LISTED_ROWS_SQL.format(",".join("?" * len(ids))), ids).fetchall()
    objects = list({r["name"]: NewObject(*r) for r in rows}.values())
    return objects if len(objects) == row["files"] else None


def insert_objects(
    conn: sqlite3.Connection, seq: int, objects: Iterator[tuple[str, str]], place: Callable[[str], str]
) -> int:
    """Insert (name, link) rows for job ``seq`` in pages; inside a transaction."""
    ids: dict[str, int] = {}
    count = 0
    while page := list(islice(objects, PAGE_SIZE)):
        rows = []
        for name, link in page:
            path = place(name)
            if path not in ids:
                ids.update(mountpath_ids(conn, [path]))
            rows.append((seq, name, link, ids[path]))
        _insert_page(conn, rows)
        count += len(rows)
        conn.execute(
            "UPDATE jobs SET scheduled_cnt = scheduled_cnt + ?, pending_cnt = pending_cnt + ?,"
            " total = max(total, scheduled_cnt + ?) WHERE seq = ?",
            (len(rows), len(rows), len(rows), seq),
        )
    return count


_LISTED_SQL = (
    "INSERT INTO objects (job, name, link, mountpath, size, etag, version, checksum, last_modified,"
    " state, error, error_code, end_time) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def insert_listed(
    conn: sqlite3.Connection, seq: int, objects: Sequence[NewObject], place: Callable[[str], str]
) -> None:
    """Insert one page of listed objects with their metadata, some already
    skipped or failed; counters move with the rows. Inside a transaction."""
    ids: dict[str, int] = {}
    rows = []
    now = time.time()
    for obj in objects:
        path = place(obj.name)
        if path not in ids:
            ids.update(mountpath_ids(conn, [path]))
        ended = now if obj.state is not ObjectState.PENDING else None
        code = obj.code.value if obj.code else None
        rows.append((seq, obj.name, obj.link, ids[path], obj.size, obj.etag, obj.version, obj.checksum,
                     obj.last_modified, obj.state.value, obj.error, code, ended))  # fmt: skip
    conn.executemany(_LISTED_SQL, rows)
    _count_inserted(conn, seq, objects)


def _count_inserted(conn: sqlite3.Connection, seq: int, objects: Sequence[NewObject]) -> None:
    def count(state: ObjectState) -> int:
        return sum(1 for o in objects if o.state is state)

    skipped_bytes = sum(o.size or 0 for o in objects if o.state is ObjectState.SKIPPED)
    conn.execute(
        "UPDATE jobs SET scheduled_cnt = scheduled_cnt + ?,"
        " total = CASE WHEN total < 0 THEN total ELSE max(total, scheduled_cnt + ?) END,"  # -1: unknown yet
        " pending_cnt = pending_cnt + ?, skipped_cnt = skipped_cnt + ?, failed_cnt = failed_cnt + ?,"
        " done_cnt = done_cnt + ?, bytes_total = bytes_total + ?, bytes_done = bytes_done + ? WHERE seq = ?",
        (len(objects), len(objects), count(ObjectState.PENDING), count(ObjectState.SKIPPED),
         count(ObjectState.FAILED), count(ObjectState.DONE), sum(o.size or 0 for o in objects), skipped_bytes, seq),
    )  # fmt: skip


def catalog_entries(
    conn: sqlite3.Connection, provider: str, namespace: str, bucket: str, names: Sequence[str]
) -> dict[str, sqlite3.Row]:
    """Catalog rows of these names in one bucket, by name."""
    found: dict[str, sqlite3.Row] = {}
    sql = "SELECT * FROM catalog WHERE provider = ? AND namespace = ? AND bucket = ? AND name IN ({})"
    for start in range(0, len(names), 500):
        chunk = list(names[start : start + 500])
        params = (provider, namespace, bucket, *chunk)
        found.update((r["name"], r) for r in conn.execute(sql.format(",".join("?" * len(chunk))), params))
    return found


_VANISHED_SQL = """
SELECT c.* FROM catalog c
WHERE c.provider = ? AND c.namespace = ? AND c.bucket = ? AND c.name >= ? AND instr(c.mountpath, '://') = 0
  AND substr(c.name, 1, ?) = ? AND substr(c.source, 1, ?) = ? {suffix}
  AND NOT EXISTS (SELECT 1 FROM objects o WHERE o.job = ? AND o.name = c.name)
ORDER BY c.name LIMIT ?
"""


def vanished(
    conn: sqlite3.Connection, job: JobRecord, prefix: str, suffix: str, link_prefix: str, limit: int = 1000
) -> list[sqlite3.Row]:
    """Stored objects of the job's bucket that came from ``link_prefix``
    (this remote bucket), match prefix/suffix, and that the job's listing
    did not see: gone from the remote."""
    params: list[Any] = [job.provider, job.namespace, job.bucket, prefix, len(prefix), prefix]
    params += [len(link_prefix), link_prefix]
    if suffix:
        params += [len(suffix), suffix]
    params += [job.seq, limit]
    sql = _VANISHED_SQL.format(suffix="AND substr(c.name, -?) = ?" if suffix else "")
    return conn.execute(sql, params).fetchall()


def record_deleted(conn: sqlite3.Connection, job: JobRecord, entries: Sequence[CatalogEntry]) -> None:
    """Objects a sync removed locally: out of the catalog, and into the job
    as finished rows (as AIStore counts them). Inside a transaction."""
    key = (job.provider, job.namespace, job.bucket)
    conn.executemany(
        "DELETE FROM catalog WHERE provider = ? AND namespace = ? AND bucket = ? AND name = ?",
        [(*key, e.name) for e in entries],
    )
    place = {e.name: e.mountpath for e in entries}
    deleted = [
        NewObject(e.name, e.source, size=0, state=ObjectState.DONE, error="deleted: gone from the remote bucket")
        for e in entries
    ]
    insert_listed(conn, job.seq, deleted, lambda name: place[name])


def _insert_page(conn: sqlite3.Connection, rows: list[tuple[int, str, str, int]]) -> None:
    sql = "INSERT INTO objects (job, name, link, mountpath) VALUES (?,?,?,?)"
    conn.execute("SAVEPOINT page")
    try:
        conn.executemany(sql, rows)
    except sqlite3.IntegrityError:
        # executemany keeps the rows before the failing one: undo them first
        conn.execute("ROLLBACK TO page")
        conn.execute("RELEASE page")
        raise SpecError("objects", f"duplicate object names: {_first_duplicate(conn, rows)}") from None
    # other errors propagate as they are: after "disk is full" SQLite has
    # already rolled back, and a RELEASE would only hide the reason
    conn.execute("RELEASE page")


def _first_duplicate(conn: sqlite3.Connection, rows: list[tuple[int, str, str, int]]) -> str:
    seen: set[str] = set()
    for row in rows:
        if row[1] in seen:
            return row[1]
        seen.add(row[1])
        hit = conn.execute("SELECT 1 FROM objects WHERE job = ? AND name = ?", row[:2]).fetchone()
        if hit:
            return row[1]
    return "?"


def ensure_bucket(conn: sqlite3.Connection, provider: str, namespace: str, name: str) -> bool:
    """Create the bucket record if missing; True if it was created."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO buckets (provider, namespace, name, created) VALUES (?,?,?,?)",
        (provider, namespace, name, time.time()),
    )
    return cur.rowcount > 0


def bucket_exists(conn: sqlite3.Connection, provider: str, namespace: str, name: str) -> bool:
    sql = "SELECT 1 FROM buckets WHERE provider = ? AND namespace = ? AND name = ?"
    return conn.execute(sql, (provider, namespace, name)).fetchone() is not None


def job_row(conn: sqlite3.Connection, job_id: str) -> sqlite3.Row:
    row: sqlite3.Row | None = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"job {job_id!r} not found")
    return row


def list_jobs(conn: sqlite3.Connection, regex: str | None = None, active_only: bool = False) -> list[sqlite3.Row]:
    """Jobs in submission order, filtered by a regex on the description."""
    pattern = None
    if regex:
        from dlengine.spec.pattern import compile_filter  # here: RE2 only for a filter, and not in workers

        pattern = compile_filter(regex)
    sql = "SELECT * FROM jobs"
    if active_only:
        sql += f" WHERE state IN {ACTIVE_JOB_STATES!r}"
    rows = conn.execute(sql + " ORDER BY seq").fetchall()
    return [r for r in rows if pattern is None or pattern.search(r["description"])]


def abort_job(conn: sqlite3.Connection, job_id: str, reason: str | None = None) -> bool:
    """Mark the job aborted and its queued objects with it.

    Running objects are left to their workers, which see the job state on
    their next lease renewal, stop, remove the work file and report them
    aborted; ``finished_time`` is set when the last of them stops (the
    trigger of migration 0007), at once if none runs. A finished job is
    marked aborted too, as AIStore does. Returns False if it was aborted
    already.
    """
    with write(conn):
        row = job_row(conn, job_id)
        if row["state"] == JobState.ABORTED.value:
            return False
        conn.execute(
            _ABORT_SQL, (JobState.ABORTED.value, redact(reason) if reason else reason, time.time(), row["seq"])
        )
        abort_queued(conn, row["seq"], time.time())
    return True


# An aborted job's finished_time: now if nothing runs, else set by the
# trigger of migration 0007 when its last running object stops.
ABORTED_TIME = "CASE WHEN running_cnt > 0 THEN NULL ELSE coalesce(finished_time, ?) END"
_ABORT_SQL = f"UPDATE jobs SET state = ?, error = coalesce(?, error), finished_time = {ABORTED_TIME} WHERE seq = ?"


def abort_queued(conn: sqlite3.Connection, seq: int, now: float) -> None:
    """The pending objects of an aborted job end aborted (in a transaction),
    its counters with them."""
    sql = "UPDATE objects SET state = 'aborted', error_code = ?, end_time = ? WHERE job = ? AND state = 'pending'"
    moved = conn.execute(sql, (ErrorCode.ABORTED.value, now, seq)).rowcount
    counts = Counts()
    counts.move_many(seq, ObjectState.PENDING.value, ObjectState.ABORTED.value, moved)
    counts.flush(conn)


def remove_job(conn: sqlite3.Connection, job_id: str) -> None:
    """Forget a finished or aborted job; stored objects stay in the catalog."""
    with write(conn):
        row = job_row(conn, job_id)
        if row["state"] in ACTIVE_JOB_STATES:
            raise StateError(f"job {job_id} is still running: abort it first, and wait until it has finished")
        _check_stopped(row, job_id)
        conn.execute("DELETE FROM objects WHERE job = ?", (row["seq"],))
        conn.execute("DELETE FROM jobs WHERE seq = ?", (row["seq"],))


def _check_stopped(row: sqlite3.Row, job_id: str) -> None:
    """An aborted job whose downloads still stop (no finished_time yet) is
    not ended for rm and retry: say so, not "abort it first"."""
    running = row["running_cnt"]
    if running > 0:
        downloads = "download is" if running == 1 else "downloads are"
        raise StateError(
            f"job {job_id} is being aborted: {running} {downloads} still stopping:"
            " wait until it has finished (a few seconds)"
        )


def retry_job(conn: sqlite3.Connection, job_id: str) -> int:
    """Queue again every object of an ended job that did not finish: the
    failed ones and those a fatal error or an abort stopped (an aborted job
    not yet fully dispatched goes on dispatching). Returns how many."""
    with write(conn):
        row = job_row(conn, job_id)
        if row["state"] in ACTIVE_JOB_STATES:
            raise StateError(f"job {job_id} is still running")
        _check_stopped(row, job_id)  # (its running rows would not be queued again: "re-queued 0")
        counts, count = Counts(), 0
        for state in (ObjectState.FAILED.value, ObjectState.ABORTED.value):
            # one statement per state, a literal (a partial index may serve it): the counters know what moved
            moved = conn.execute(_REQUEUE_SQL.format(repr(state)), (row["seq"],)).rowcount
            counts.move_many(row["seq"], state, ObjectState.PENDING.value, moved)
            count += moved
        counts.flush(conn)
        if count or not row["all_dispatched"]:
            conn.execute(_REOPEN_JOB_SQL, (row["seq"],))
        return count


# a row whose worker died with it keeps one death: retried alone, so it
# cannot take others down with it again, with all its attempts but that one
_REQUEUE_SQL = (
    "UPDATE objects SET state = 'pending', attempts = 0, next_try = 0, error = NULL, error_code = NULL,"
    " end_time = NULL, deaths = min(deaths, 1) WHERE job = ? AND state = {}"
)
_REOPEN_JOB_SQL = "UPDATE jobs SET state = 'pending', error = NULL, finished_time = NULL WHERE seq = ?"


def finish_jobs(conn: sqlite3.Connection, seqs: Iterable[int] | None = None) -> list[str]:
    """Mark finished every active job with nothing left to do (inside or
    outside a transaction); returns their ids."""
    sql = (
        "UPDATE jobs SET state = 'finished', finished_time = ?,"
        " started_time = coalesce(started_time, ?)"
        f" WHERE state IN {ACTIVE_JOB_STATES!r} AND all_dispatched = 1"
        " AND pending_cnt = 0 AND running_cnt = 0"
    )
    now = time.time()
    params: list[Any] = [now, now]
    if seqs is not None:
        seq_list = list(seqs)
        if not seq_list:
            return []
        sql += f" AND seq IN ({','.join('?' * len(seq_list))})"
        params += seq_list
    return [r[0] for r in conn.execute(sql + " RETURNING id", params).fetchall()]


def request_headers(conn: sqlite3.Connection, job_id: str) -> dict[str, str]:
    """The job's non-secret request headers, from its stored spec."""
    row = conn.execute("SELECT spec FROM jobs WHERE id = ?", (job_id,)).fetchone()
    headers = (json.loads(row[0]) if row else {}).get("headers") or {}
    return {str(k): str(v) for k, v in headers.items()}


def failures_by_code(conn: sqlite3.Connection, seq: int) -> dict[str, int]:
    """Failed objects of a job counted by error code ("" when unknown)."""
    sql = "SELECT coalesce(error_code, ''), count(*) FROM objects WHERE job = ? AND state = 'failed' GROUP BY 1"
    return {r[0]: r[1] for r in conn.execute(sql, (seq,))}


def count_by_state(conn: sqlite3.Connection, seq: int) -> dict[str, int]:
    """Counted from the rows (for consistency checks; status uses counters)."""
    sql = "SELECT state, count(*) FROM objects WHERE job = ? GROUP BY state"
    counts = {s.value: 0 for s in ObjectState}
    counts.update({r[0]: r[1] for r in conn.execute(sql, (seq,))})
    return counts

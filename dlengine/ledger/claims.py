"""Workers and the ledger: claim batches, report outcomes in batches,
renew leases, recover the rows of dead owners."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence

from dlengine.ledger.db import write
from dlengine.ledger.jobs import ABORTED_TIME, abort_queued, finish_jobs
from dlengine.ledger.models import Outcome, StoredInfo, Task
from dlengine.ledger.states import ACTIVE_JOB_STATES, ObjectState
from dlengine.redact import redact

# Jobs with the fewest running objects first, then the oldest: concurrent
# jobs share the download threads, so a slow (e.g. rate-limited) job cannot
# hold every thread while a newer job waits.
_ACTIVE_JOBS_SQL = (
    "SELECT seq, id, type, conns, running_cnt, timeout, bytes_per_hour, provider, namespace, bucket, state"
    f" FROM jobs WHERE state IN {ACTIVE_JOB_STATES!r} AND pending_cnt > 0 ORDER BY running_cnt, seq"
)

_CLAIM_SQL = """
UPDATE objects SET state = 'running', owner = ?, lease_expiry = ?, attempts = attempts + 1,
       start_time = ?, bytes_done = 0
WHERE id IN (SELECT id FROM objects
             WHERE job = ? AND mountpath = ? AND state = 'pending' AND next_try <= ? LIMIT ?)
RETURNING id, name, link, attempts, size, etag, version, checksum
"""

# what the catalog holds of a claim's names: one statement per claimed job
# and chunk of names, not one per row
_STORED_SQL = """
SELECT name, size, etag, version, checksum, last_modified, source, stored_time FROM catalog
WHERE provider = ? AND namespace = ? AND bucket = ? AND name IN ({})
"""
CHUNK = 500  # names or ids per IN list (well below SQLite's variable limit)


def claim(conn: sqlite3.Connection, mountpath_id: int, owner: str, limit: int, lease_seconds: float) -> list[Task]:
    """Claim up to ``limit`` pending objects of this mountpath, the job with
    the fewest running objects first, never letting a job exceed its
    connection limit."""
    now = time.time()
    tasks: list[Task] = []
    with write(conn):
        for job in conn.execute(_ACTIVE_JOBS_SQL).fetchall():
            room = limit - len(tasks)
            if job["conns"]:
                room = min(room, job["conns"] - job["running_cnt"])
            if room <= 0:
                continue
            params = (owner, now + lease_seconds, now, job["seq"], mountpath_id, now, room)
            rows = conn.execute(_CLAIM_SQL, params).fetchall()
            if rows and job["state"] == "pending":
                conn.execute("UPDATE jobs SET state = 'running', started_time = ? WHERE seq = ?", (now, job["seq"]))
            stored = _stored(conn, job, [row["name"] for row in rows])
            tasks += [_task(job, row, mountpath_id, stored.get(row["name"])) for row in rows]
            if len(tasks) >= limit:
                break
    return tasks


def _stored(conn: sqlite3.Connection, job: sqlite3.Row, names: list[str]) -> dict[str, StoredInfo]:
    """The catalog's entries for ``names`` in the job's bucket."""
    found: dict[str, StoredInfo] = {}
    bucket = (job["provider"], job["namespace"], job["bucket"])
    for start in range(0, len(names), CHUNK):
        chunk = names[start : start + CHUNK]
        sql = _STORED_SQL.format(",".join("?" * len(chunk)))
        for hit in conn.execute(sql, (*bucket, *chunk)):
            found[hit[0]] = StoredInfo(*hit[1:])
    return found


def _task(job: sqlite3.Row, row: sqlite3.Row, mountpath_id: int, stored: StoredInfo | None) -> Task:
    return Task(
        id=row["id"],
        job_id=job["id"],
        job_seq=job["seq"],
        name=row["name"],
        link=row["link"],
        mountpath_id=mountpath_id,
        attempts=row["attempts"],
        provider=job["provider"],
        namespace=job["namespace"],
        bucket=job["bucket"],
        timeout=job["timeout"],
        bytes_per_hour=job["bytes_per_hour"],
        job_type=job["type"],
        size=row["size"],
        etag=row["etag"],
        version=row["version"],
        checksum=row["checksum"],
        connections=job["conns"] or 0,
        stored=stored,
    )


_FINAL_SQL = """
UPDATE objects SET state = ?, size = coalesce(?, size), bytes_done = coalesce(?, bytes_done),
       etag = ?, version = ?, checksum = ?, last_modified = ?, error = ?, error_code = ?,
       owner = NULL, lease_expiry = NULL, end_time = ?
WHERE id = ? AND owner = ? AND state = 'running'
RETURNING job
"""

# "Give a running row back": the one transition for a retry, a release, a
# dead owner and an expired lease. The row is pending again, or ends aborted
# if its job was aborted meanwhile (no pending row under an aborted job).
_GIVE_BACK = """
state = CASE WHEN (SELECT state FROM jobs WHERE seq = job) = 'aborted' THEN 'aborted' ELSE 'pending' END,
owner = NULL, lease_expiry = NULL
"""

_RETRY_SQL = f"""
UPDATE objects SET error = ?, error_code = ?, next_try = ?, attempts = attempts - ?, {_GIVE_BACK}
WHERE id = ? AND owner = ? AND state = 'running'
RETURNING job
"""

_RECOVER_SQL = f"UPDATE objects SET {_GIVE_BACK} WHERE state = 'running' AND {{owners}} RETURNING id, job"
_RECOVER_EXPIRED_SQL = (
    f"UPDATE objects SET {_GIVE_BACK} WHERE state = 'running' AND lease_expiry < ?{{alive}} RETURNING id, job"
)

_CATALOG_SQL = """
INSERT OR REPLACE INTO catalog (provider, namespace, bucket, name, size, mountpath, source, etag,
       version, checksum, last_modified, stored_time, job_id)
SELECT j.provider, j.namespace, j.bucket, o.name, o.size, ?, o.link, o.etag, o.version, o.checksum,
       o.last_modified, ?, j.id
FROM objects o JOIN jobs j ON j.seq = o.job WHERE o.id = ?
"""

# done outcomes of a report, set-based: the rows this owner still leases
# (one SELECT), their updates (one executemany), their catalog entries (one
# INSERT ... SELECT per mountpath)
_LEASED_SQL = "SELECT id, job FROM objects WHERE id IN ({}) AND owner = ? AND state = 'running'"
_DONE_SQL = _FINAL_SQL.replace("RETURNING job\n", "")
_CATALOG_MANY_SQL = _CATALOG_SQL.replace("WHERE o.id = ?", "WHERE o.id IN ({})")


def report(conn: sqlite3.Connection, owner: str, outcomes: Sequence[Outcome]) -> list[str]:
    """Record a batch of outcomes in one transaction (group commit).

    Rows no longer leased by ``owner`` (recovered meanwhile) are left alone.
    Returns the ids of jobs that this batch finished.
    """
    now = time.time()
    touched: set[int] = set()
    fatal: dict[int, str] = {}
    done = [o for o in outcomes if o.state is ObjectState.DONE and not o.fatal]
    with write(conn):
        touched |= _apply_done(conn, owner, done, now)
        for out in outcomes:
            if out.state is ObjectState.DONE and not out.fatal:
                continue
            job = _apply(conn, owner, out, now)
            if job is None:
                continue
            touched.add(job)
            if out.fatal:
                fatal[job] = out.error or "fatal error"
        for job, reason in fatal.items():
            _stop_job(conn, job, reason, now)
        return finish_jobs(conn, touched)


def _apply_done(conn: sqlite3.Connection, owner: str, outcomes: list[Outcome], now: float) -> set[int]:
    """Done outcomes in a few statements per ``CHUNK`` instead of two per
    row (the supervisor of a Dask cluster reports hundreds at once); rows
    no longer leased by ``owner`` are left alone. Returns their jobs."""
    jobs: set[int] = set()
    for start in range(0, len(outcomes), CHUNK):
        chunk = outcomes[start : start + CHUNK]
        ids = [o.task_id for o in chunk]
        leased = dict(conn.execute(_LEASED_SQL.format(",".join("?" * len(ids))), (*ids, owner)).fetchall())
        mine = [o for o in chunk if o.task_id in leased]
        if not mine:
            continue
        conn.executemany(_DONE_SQL, [_final_params(o, now, owner) for o in mine])
        by_mountpath: dict[str, list[int]] = {}
        for out in mine:
            by_mountpath.setdefault(out.mountpath, []).append(out.task_id)
        for mountpath, rows in by_mountpath.items():
            conn.execute(_CATALOG_MANY_SQL.format(",".join("?" * len(rows))), (mountpath, now, *rows))
        jobs.update(leased[o.task_id] for o in mine)
    return jobs


def _final_params(out: Outcome, now: float, owner: str) -> tuple[object, ...]:
    size = out.size if out.state in (ObjectState.DONE, ObjectState.SKIPPED) else None
    return (
        out.state.value, out.size, size, out.etag, out.version, out.checksum,
        out.last_modified, _error(out), _code(out), now, out.task_id, owner,
    )  # fmt: skip


def _apply(conn: sqlite3.Connection, owner: str, out: Outcome, now: float) -> int | None:
    if out.state is ObjectState.PENDING:
        back = (_error(out), _code(out), out.next_try, int(out.release), out.task_id, owner)
        row = conn.execute(_RETRY_SQL, back).fetchone()
        return None if row is None else int(row[0])
    row = conn.execute(_FINAL_SQL, _final_params(out, now, owner)).fetchone()
    if row is None:
        return None
    if out.state is ObjectState.DONE:
        conn.execute(_CATALOG_SQL, (out.mountpath, now, out.task_id))
    return int(row[0])


def _error(out: Outcome) -> str | None:
    """The error text as stored: a signed link's secrets never reach the ledger."""
    return redact(out.error) if out.error else out.error


def _code(out: Outcome) -> str | None:
    return out.code.value if out.code is not None else None


def _stop_job(conn: sqlite3.Connection, seq: int, reason: str, now: float) -> None:
    """A fatal error: the job stops with the reason, queued objects with it."""
    sql = (
        f"UPDATE jobs SET state = 'aborted', error = ?, finished_time = {ABORTED_TIME}"
        f" WHERE seq = ? AND state IN {ACTIVE_JOB_STATES!r}"
    )
    conn.execute(sql, (redact(reason), now, seq))
    abort_queued(conn, seq, now)


def renew(
    conn: sqlite3.Connection, owner: str, lease_seconds: float, progress: dict[int, tuple[int, int | None]]
) -> set[int]:
    """Extend this owner's leases, record progress of running objects
    (id -> (bytes_done, size)), and return the ids whose job was aborted."""
    with write(conn):
        conn.execute(
            "UPDATE objects SET lease_expiry = ? WHERE owner = ? AND state = 'running'",
            (time.time() + lease_seconds, owner),
        )
        conn.executemany(
            "UPDATE objects SET bytes_done = ?, size = coalesce(?, size) WHERE id = ? AND owner = ?",
            [(done, size, oid, owner) for oid, (done, size) in progress.items()],
        )
        return aborted_rows(conn, owner)


def aborted_rows(conn: sqlite3.Connection, owner: str) -> set[int]:
    sql = (
        "SELECT o.id FROM objects o JOIN jobs j ON j.seq = o.job"
        " WHERE o.owner = ? AND o.state = 'running' AND j.state = 'aborted'"
    )
    return {r[0] for r in conn.execute(sql, (owner,))}


def recover(conn: sqlite3.Connection, keep_owners: Iterable[str] = ()) -> list[int]:
    """Return running rows of owners not in ``keep_owners`` to pending (or
    aborted, if their job was aborted); work files stay for resume.

    Returns the recovered row ids.
    """
    keep = list(keep_owners)
    cond = f"owner NOT IN ({','.join('?' * len(keep))})" if keep else "1"
    with write(conn):
        rows = conn.execute(_RECOVER_SQL.format(owners=cond), keep).fetchall()
        finish_jobs(conn, {r[1] for r in rows})
    return [r[0] for r in rows]


def recover_expired(conn: sqlite3.Connection, alive_owners: Iterable[str] = ()) -> list[int]:
    """Give back rows whose lease ran out (owner presumed dead).

    Owners known to be alive keep their rows even past the lease: a worker
    that could not renew (the ledger was locked for long) is still writing
    its work file, and a second writer on the same file would corrupt it.
    """
    alive = list(alive_owners)
    keep = f" AND owner NOT IN ({','.join('?' * len(alive))})" if alive else ""
    with write(conn):
        rows = conn.execute(_RECOVER_EXPIRED_SQL.format(alive=keep), (time.time(), *alive)).fetchall()
        finish_jobs(conn, {r[1] for r in rows})
    return [r[0] for r in rows]

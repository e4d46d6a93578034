"""Workers and the ledger: claim batches, report outcomes in batches,
renew leases, recover the rows of dead owners."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dlengine import records
from dlengine.errors import ErrorCode
from dlengine.ledger.counters import Counts, count_moves
from dlengine.ledger.db import write
from dlengine.ledger.jobs import ABORTED_TIME, abort_queued, finish_jobs
from dlengine.ledger.models import Outcome, StoredInfo, Task
from dlengine.ledger.states import ACTIVE_JOB_STATES, ObjectState
from dlengine.redact import redact

# Jobs with the fewest running objects first, then the oldest: concurrent
# jobs share the download threads, so a slow (e.g. rate-limited) job cannot
# hold every thread while a newer job waits.
_ACTIVE_JOBS_SQL = (
    "SELECT seq, id, type, conns, running_cnt, timeout, bytes_per_hour, provider, namespace, bucket, state,"
    " pending_cnt, deaths"
    f" FROM jobs WHERE state IN {ACTIVE_JOB_STATES!r} AND pending_cnt > 0 ORDER BY running_cnt, seq"
)

# "Take a pending row" (every claim: the rows it takes, then what _tasks
# reads of them, by position): the owner's lease, one more attempt
_TAKE = (
    "UPDATE objects SET state = 'running', owner = ?, lease_expiry = ?, attempts = attempts + 1,"
    " start_time = ?, bytes_done = 0"
)
_TAKEN = "RETURNING id, name, link, attempts, size, etag, version, checksum, deaths"

_CLAIM_SQL = f"""
{_TAKE}
WHERE id IN (SELECT id FROM objects
             WHERE job = ? AND mountpath = ? AND state = 'pending' AND deaths = 0 AND next_try <= ? LIMIT ?)
{_TAKEN}
"""

# A row whose worker died with it (deaths > 0), claimed alone by a worker
# that holds nothing else: if it kills this worker too, no other object is
# interrupted or blamed with it. Asked only of a job with deaths, by an
# idle claimer (``claim``'s ``idle``); served by objects_todo's deaths.
_CLAIM_ALONE_SQL = f"""
{_TAKE}
WHERE id = (SELECT id FROM objects
            WHERE job = ? AND mountpath = ? AND state = 'pending' AND deaths > 0 AND next_try <= ? LIMIT 1)
{_TAKEN}
"""

# The same, where an object of ``threshold`` bytes or more counts as the
# connections its ranged segments take (as many as ``engine.curl``'s
# ``segment_bounds`` makes: ``connections``): of the candidates, the rows are
# taken in id order while the connections before each stay below the room
# (the first always), so one worker does not take every large object of a
# job at once while the others on its mountpath have nothing to do. The
# weighing is done in Python between the two statements (one transaction):
# the same in one statement, with a window function over the candidates,
# took 1.8 ms for 16 rows of a 10,000-row job on SQLite 3.40 (its plan
# reads every pending row), the two statements ~40 us.
_CANDIDATES_SQL = """
SELECT id, size FROM objects
WHERE job = ? AND mountpath = ? AND state = 'pending' AND deaths = 0 AND next_try <= ? LIMIT ?
"""
_CLAIM_IDS_SQL = f"""
{_TAKE}
WHERE id IN ({{}}) AND state = 'pending'
{_TAKEN}
"""

# what the catalog holds of a claim's names: one statement per claimed job
# and chunk of names, not one per row
_STORED_SQL = """
SELECT name, size, etag, version, checksum, last_modified, source, stored_time FROM catalog
WHERE provider = ? AND namespace = ? AND bucket = ? AND name IN ({})
"""
CHUNK = 500  # names or ids per IN list (well below SQLite's variable limit)

# a claim's counters and the job's start, one statement per claimed job
_CLAIMED_SQL = """
UPDATE jobs SET pending_cnt = pending_cnt - ?1, running_cnt = running_cnt + ?1,
       started_time = CASE WHEN state = 'pending' THEN ?2 ELSE started_time END,
       state = CASE WHEN state = 'pending' THEN 'running' ELSE state END
WHERE seq = ?3
"""


def claim(
    conn: sqlite3.Connection,
    mountpath_id: int,
    owner: str,
    limit: int,
    lease_seconds: float,
    threshold: int = 0,
    segments: int = 8,
    sharers: int = 1,
    idle: bool = False,
) -> list[Task]:
    """Claim up to ``limit`` pending objects of this mountpath, the job with
    the fewest running objects first, never letting a job exceed its
    connection limit. ``threshold`` (the segment threshold, 0 = off): the
    limit is in connections, and an object of that size or more counts as
    its segments (at most ``segments``) in a job without a connection limit.
    ``sharers``: the workers claiming on this mountpath; a claim takes at
    most its share of a job's pending rows, so the few large files of a
    job whose sizes nobody knows yet (a range of links) go to every worker,
    not all to the first one's loop. ``idle``: the claimer holds no rows;
    only then may it take a row whose worker died with it (``deaths``), and
    then that row alone (``_CLAIM_ALONE_SQL``)."""
    now = time.time()
    tasks: list[Task] = []
    used = 0
    with write(conn):
        active = conn.execute(_ACTIVE_JOBS_SQL).fetchall()
        if idle:
            alone = _claim_alone(conn, active, mountpath_id, owner, now + lease_seconds, now)
            if alone:
                return alone
        for job in active:
            room = limit - used  # connections
            if job["conns"]:
                room = min(room, job["conns"] - job["running_cnt"])
            take = room  # rows: as many as connections, or its share of the job's last ones
            if sharers > 1:  # the last rows of a job are shared, not all taken by the first to ask
                take = min(take, max(1, -(-(job["pending_cnt"] + job["running_cnt"]) // sharers)))
            if take <= 0:
                continue
            lease = now + lease_seconds
            weighed = threshold > 0 and not job["conns"]
            if weighed:  # at most ``take`` rows, their segments' connections within ``room``
                candidates = conn.execute(_CANDIDATES_SQL, (job["seq"], mountpath_id, now, take))
                ids, weight = _weighed(candidates, room, threshold, segments)
                sql = _CLAIM_IDS_SQL.format(",".join("?" * len(ids)))
                rows = conn.execute(sql, (owner, lease, now, *ids)).fetchall() if ids else []
            else:
                params = (owner, lease, now, job["seq"], mountpath_id, now, take)
                rows = conn.execute(_CLAIM_SQL, params).fetchall()
                weight = len(rows)
            if rows:
                conn.execute(_CLAIMED_SQL, (len(rows), now, job["seq"]))
            tasks += _tasks(job, rows, mountpath_id, _stored(conn, job, [row[1] for row in rows]))
            used += weight
            if used >= limit:
                break
    return tasks


def _claim_alone(
    conn: sqlite3.Connection, active: list[sqlite3.Row], mountpath_id: int, owner: str, lease: float, now: float
) -> list[Task]:
    """One row whose worker died with it, of the first job that has one
    and room for it (only jobs with deaths are asked), or nothing."""
    for job in active:
        if not job["deaths"] or (job["conns"] and job["running_cnt"] >= job["conns"]):
            continue
        rows = conn.execute(_CLAIM_ALONE_SQL, (owner, lease, now, job["seq"], mountpath_id, now)).fetchall()
        if rows:
            conn.execute(_CLAIMED_SQL, (1, now, job["seq"]))
            return _tasks(job, rows, mountpath_id, _stored(conn, job, [rows[0][1]]))
    return []


def _weighed(candidates: Iterable[Sequence[Any]], room: int, threshold: int, segments: int) -> tuple[list[int], int]:
    """The ids of the candidates (id, size) a weighed claim takes (in id
    order, while the connections of those before stay below ``room``) and
    the connections they take together."""
    ids: list[int] = []
    before = 0
    for oid, size in sorted((c[0], c[1]) for c in candidates):
        if before >= room:
            break
        ids.append(oid)
        before += connections(size, threshold, segments)
    return ids, before


def connections(size: int | None, threshold: int, segments: int = 8) -> int:
    """What a weighed claim counts an object as: the connections of its
    ranged segments (``engine.curl.segment_bounds``), else 1."""
    if size is None or size < threshold:
        return 1
    return max(1, min(segments, size // (threshold // 4)))


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


_TASK_FIELDS = records.names(Task)


def _tasks(job: sqlite3.Row, rows: list[sqlite3.Row], mountpath_id: int, stored: dict[str, StoredInfo]) -> list[Task]:
    """The claimed rows (``_CLAIM_SQL``'s RETURNING, by position) as tasks.
    The job's fields are set once, in a template of a Task's fields that
    each row's copy completes, and the copy becomes the Task's ``__dict__``
    without ``__init__`` (as ``build_rows``): ~1 us a row instead of ~3
    (the ledger thread claims every object; a Dask claim is thousands)."""
    template: dict[str, object] = dict.fromkeys(_TASK_FIELDS)
    template.update(
        job_id=job["id"], job_seq=job["seq"], mountpath_id=mountpath_id, provider=job["provider"],
        namespace=job["namespace"], bucket=job["bucket"], timeout=job["timeout"],
        bytes_per_hour=job["bytes_per_hour"], job_type=job["type"], connections=job["conns"] or 0,
    )  # fmt: skip
    new, set_ = object.__new__, object.__setattr__
    tasks = []
    for row in rows:
        task, values = new(Task), template.copy()
        # (``_TAKEN``'s columns, in its order)
        (values["id"], values["name"], values["link"], values["attempts"], values["size"], values["etag"],
         values["version"], values["checksum"], values["deaths"]) = row  # fmt: skip
        values["stored"] = stored.get(row[1])
        set_(task, "__dict__", values)
        tasks.append(task)
    return tasks


_FINAL_SQL = """
UPDATE objects SET state = ?, size = coalesce(?, size), bytes_done = coalesce(?, bytes_done),
       etag = ?, version = ?, checksum = ?, last_modified = ?, error = ?, error_code = ?,
       owner = NULL, lease_expiry = NULL, end_time = ?
WHERE id = ? AND owner = ? AND state = 'running'
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
RETURNING job, state
"""

_RECOVER_SQL = f"UPDATE objects SET {_GIVE_BACK} WHERE state = 'running' AND {{owners}} RETURNING id, job, state"
_RECOVER_EXPIRED_SQL = (
    f"UPDATE objects SET {_GIVE_BACK} WHERE state = 'running' AND lease_expiry < ?{{alive}} RETURNING id, job, state"
)

_CATALOG_SQL = """
INSERT OR REPLACE INTO catalog (provider, namespace, bucket, name, size, mountpath, source, etag,
       version, checksum, last_modified, stored_time, job_id)
SELECT j.provider, j.namespace, j.bucket, o.name, o.size, ?, o.link, o.etag, o.version, o.checksum,
       o.last_modified, ?, j.id
FROM objects o JOIN jobs j ON j.seq = o.job WHERE o.id = ?
"""

# the rows of a report this owner still leases, with what the counters need
# (one SELECT per CHUNK); done outcomes are then recorded set-based: their
# updates (one executemany), their catalog entries (one INSERT ... SELECT
# per mountpath)
_LEASED_SQL = "SELECT id, job, size FROM objects WHERE id IN ({}) AND owner = ? AND state = 'running'"
_CATALOG_MANY_SQL = _CATALOG_SQL.replace("WHERE o.id = ?", "WHERE o.id IN ({})")

_RUNNING = ObjectState.RUNNING.value

Leased = dict[int, tuple[int, int | None]]  # row id -> (job, size) of rows still leased


def report(conn: sqlite3.Connection, owner: str, outcomes: Sequence[Outcome]) -> list[str]:
    """Record a batch of outcomes in one transaction (group commit).

    Rows no longer leased by ``owner`` (recovered meanwhile) are left alone.
    The counters of each job move once, by the sum of its rows' moves.
    Returns the ids of jobs that this batch finished.
    """
    now = time.time()
    counts = Counts()
    fatal: dict[int, str] = {}
    done = [o for o in outcomes if o.state is ObjectState.DONE and not o.fatal]
    with write(conn):
        leased = _leased(conn, owner, [o.task_id for o in outcomes])
        _apply_done(conn, owner, done, now, leased, counts)
        for out in outcomes:
            if out.state is ObjectState.DONE and not out.fatal:
                continue
            job = _apply(conn, owner, out, now, leased, counts)
            if job is not None and out.fatal:
                fatal[job] = out.error or "fatal error"
        touched = counts.flush(conn)  # before a stop: an aborted job's finished_time reads running_cnt
        for job, reason in fatal.items():
            _stop_job(conn, job, reason, now)
        return finish_jobs(conn, touched)


def _leased(conn: sqlite3.Connection, owner: str, ids: list[int]) -> Leased:
    """(job, size) of the rows among ``ids`` that ``owner`` still leases."""
    leased: Leased = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        for row_id, job, size in conn.execute(_LEASED_SQL.format(",".join("?" * len(chunk))), (*chunk, owner)):
            leased[row_id] = (job, size)
    return leased


def _apply_done(
    conn: sqlite3.Connection, owner: str, outcomes: list[Outcome], now: float, leased: Leased, counts: Counts
) -> None:
    """Done outcomes in a few statements per ``CHUNK`` instead of two per
    row (the supervisor of a Dask cluster reports hundreds at once); rows
    no longer leased by ``owner`` are left alone, and a row reported twice
    is recorded once (the first, as the executemany does)."""
    moved: dict[int, list[int]] = {}  # job -> [rows, their old sizes, their new sizes]
    for start in range(0, len(outcomes), CHUNK):
        mine = []
        for out in outcomes[start : start + CHUNK]:
            row = leased.pop(out.task_id, None)
            if row is not None:
                mine.append(out)
                job, old_size = row
                size = out.size if out.size is not None else old_size
                sums = moved.get(job) or moved.setdefault(job, [0, 0, 0])
                sums[0] += 1
                sums[1] += old_size or 0
                sums[2] += size or 0
        if not mine:
            continue
        conn.executemany(_FINAL_SQL, [_final_params(o, now, owner) for o in mine])
        by_mountpath: dict[str, list[int]] = {}
        for out in mine:
            by_mountpath.setdefault(out.mountpath, []).append(out.task_id)
        for mountpath, rows in by_mountpath.items():
            conn.execute(_CATALOG_MANY_SQL.format(",".join("?" * len(rows))), (mountpath, now, *rows))
    for job, (count, old_bytes, new_bytes) in moved.items():
        counts.move_sized(job, _RUNNING, ObjectState.DONE.value, count, old_bytes, new_bytes)


def _final_params(out: Outcome, now: float, owner: str) -> tuple[object, ...]:
    size = out.size if out.state in (ObjectState.DONE, ObjectState.SKIPPED) else None
    return (
        out.state.value, out.size, size, out.etag, out.version, out.checksum,
        out.last_modified, _error(out), _code(out), now, out.task_id, owner,
    )  # fmt: skip


def _apply(
    conn: sqlite3.Connection, owner: str, out: Outcome, now: float, leased: Leased, counts: Counts
) -> int | None:
    """One outcome other than a plain done; the row's job if it was leased."""
    row = leased.pop(out.task_id, None)
    if row is None:
        return None
    job, old_size = row
    if out.state is ObjectState.PENDING:
        back = (_error(out), _code(out), out.next_try, int(out.release), out.task_id, owner)
        state = conn.execute(_RETRY_SQL, back).fetchone()[1]
        counts.move(job, _RUNNING, state, old_size, old_size)
        return job
    conn.execute(_FINAL_SQL, _final_params(out, now, owner))
    counts.move(job, _RUNNING, out.state.value, old_size, out.size if out.size is not None else old_size)
    if out.state is ObjectState.DONE:
        conn.execute(_CATALOG_SQL, (out.mountpath, now, out.task_id))
    return job


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
        _count_sizes(conn, owner, {oid: size for oid, (_done, size) in progress.items() if size is not None})
        conn.executemany(
            "UPDATE objects SET bytes_done = ?, size = coalesce(?, size) WHERE id = ? AND owner = ?",
            [(done, size, oid, owner) for oid, (done, size) in progress.items()],
        )
        return aborted_rows(conn, owner)


_SIZES_SQL = "SELECT id, job, state, size FROM objects WHERE id IN ({}) AND owner = ?"


def _count_sizes(conn: sqlite3.Connection, owner: str, sizes: dict[int, int]) -> None:
    """bytes_total of the jobs whose rows learn a size (a renewal's progress
    names an object's size once its answer gave it)."""
    counts = Counts()
    ids = list(sizes)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        for row_id, job, state, size in conn.execute(_SIZES_SQL.format(",".join("?" * len(chunk))), (*chunk, owner)):
            if size != sizes[row_id]:
                counts.move(job, state, state, size, sizes[row_id])
    counts.flush(conn)


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
        _given_back(conn, rows)
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
        _given_back(conn, rows)
    return [r[0] for r in rows]


# The rows of workers that died: every one counts a death (and so is
# claimed alone from now on); a row a worker died with alone, at its
# limit-th death, fails instead of going back (or ends aborted with its job).
_HELD_SQL = "SELECT id, owner, deaths FROM objects WHERE state = 'running' AND owner IN ({})"
_DIED_SQL = f"UPDATE objects SET deaths = deaths + 1, {_GIVE_BACK} WHERE id IN ({{}}) RETURNING id, job, state"
_KILLED_BY_SQL = """
UPDATE objects SET deaths = deaths + 1, error = ?, error_code = ?, end_time = ?, owner = NULL, lease_expiry = NULL,
       state = CASE WHEN (SELECT state FROM jobs WHERE seq = job) = 'aborted' THEN 'aborted' ELSE 'failed' END
WHERE id = ? AND state = 'running'
RETURNING id, job, state
"""
_JOB_DEATHS_SQL = "UPDATE jobs SET deaths = deaths + ? WHERE seq = ?"


def recover_dead(conn: sqlite3.Connection, died: Mapping[str, str], limit: int) -> tuple[list[int], list[int]]:
    """The running rows of workers that died by themselves (owner -> how:
    "killed by SIGKILL", "exit code 1: its last lines"), each counting a
    death of the row: back to pending (to be claimed alone), or, for the
    only row of its worker at its ``limit``-th death, failed with code
    ``worker``, saying how. Not for the rows of a supervisor's workers
    after the supervisor died: ``recover`` does not count.

    Returns (the ids given back, the ids failed).
    """
    owners = list(died)
    if not owners:
        return [], []
    now = time.time()
    with write(conn):
        held = conn.execute(_HELD_SQL.format(",".join("?" * len(owners))), owners).fetchall()
        alone = Counter(r[1] for r in held)
        doomed = {r[0]: (r[1], r[2] + 1) for r in held if alone[r[1]] == 1 and r[2] + 1 >= max(1, limit)}
        moved: list[sqlite3.Row] = []
        for row_id, (owner, deaths) in doomed.items():
            why = redact(f"its worker died {deaths} times while downloading it (the last time: {died[owner]})")
            moved += conn.execute(_KILLED_BY_SQL, (why, ErrorCode.WORKER.value, now, row_id)).fetchall()
        back = [r[0] for r in held if r[0] not in doomed]
        for start in range(0, len(back), CHUNK):
            chunk = back[start : start + CHUNK]
            moved += conn.execute(_DIED_SQL.format(",".join("?" * len(chunk))), chunk).fetchall()
        for job, count in Counter(r[1] for r in moved).items():
            conn.execute(_JOB_DEATHS_SQL, (count, job))
        _given_back(conn, moved)
    failed = [r[0] for r in moved if r[2] == ObjectState.FAILED.value]
    return [r[0] for r in moved if r[0] not in doomed], failed


def _given_back(conn: sqlite3.Connection, rows: list[sqlite3.Row]) -> None:
    """Counters of rows given back ((id, job, new state), all were
    running), then the jobs they leave with nothing to do are finished."""
    counts = Counts()
    count_moves(counts, ((r[1], r[2]) for r in rows), _RUNNING)
    finish_jobs(conn, counts.flush(conn))

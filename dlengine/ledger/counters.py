"""Job counters moved by the transitions themselves, once per job and
transaction (migration 0008 dropped the per-row triggers that did it).

A trigger ran one ``UPDATE jobs`` per changed row: three per object over
a claim and a report, most of the ledger's cost per object. Here each
transition tells a :class:`Counts` how its rows moved (from which state to
which, old and new size) and :meth:`Counts.flush` writes one aggregated
``UPDATE jobs`` per job, inside the transaction that changed the rows: a
crash rolls back both or neither, as with the triggers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from dlengine.ledger.states import ObjectState

# the counter column of each object state, in the order of a delta vector
_STATE_COLUMNS = {
    ObjectState.PENDING.value: "pending_cnt",
    ObjectState.RUNNING.value: "running_cnt",
    ObjectState.DONE.value: "done_cnt",
    ObjectState.SKIPPED.value: "skipped_cnt",
    ObjectState.FAILED.value: "failed_cnt",
    ObjectState.ABORTED.value: "aborted_cnt",
}
_COLUMNS = (*_STATE_COLUMNS.values(), "bytes_done", "bytes_total")
_INDEX = {state: i for i, state in enumerate(_STATE_COLUMNS)}
_BYTES_DONE, _BYTES_TOTAL = len(_STATE_COLUMNS), len(_STATE_COLUMNS) + 1
_FINISHED = (ObjectState.DONE.value, ObjectState.SKIPPED.value)  # their sizes count as bytes_done

_FLUSH_SQL = "UPDATE jobs SET {} WHERE seq = ?"


class Counts:
    """Counter deltas per job of one transaction, written by :meth:`flush`."""

    def __init__(self) -> None:
        self._deltas: dict[int, list[int]] = {}

    def _delta(self, job: int) -> list[int]:
        found = self._deltas.get(job)
        if found is None:
            found = self._deltas[job] = [0] * len(_COLUMNS)
        return found

    def move(self, job: int, old: str, new: str, old_size: int | None = None, new_size: int | None = None) -> None:
        """One row of ``job`` went from state ``old`` (size ``old_size``) to
        ``new`` (``new_size``); sizes are the column's values (None = unknown)."""
        self.move_sized(job, old, new, 1, old_size or 0, new_size or 0)

    def move_sized(self, job: int, old: str, new: str, count: int, old_bytes: int, new_bytes: int) -> None:
        """``count`` rows of ``job`` went from ``old`` to ``new``, their
        sizes summing to ``old_bytes`` before and ``new_bytes`` after (the
        done rows of a report, one call per job instead of one per row)."""
        delta = self._delta(job)
        if old != new:
            delta[_INDEX[old]] -= count
            delta[_INDEX[new]] += count
        if old in _FINISHED:
            delta[_BYTES_DONE] -= old_bytes
        if new in _FINISHED:
            delta[_BYTES_DONE] += new_bytes
        delta[_BYTES_TOTAL] += new_bytes - old_bytes

    def move_many(self, job: int, old: str, new: str, count: int) -> None:
        """``count`` rows of ``job`` changed state, none of them a finished
        one (so no byte counter moves: pending, running, failed, aborted)."""
        if count and old != new:
            delta = self._delta(job)
            delta[_INDEX[old]] -= count
            delta[_INDEX[new]] += count

    def flush(self, conn: sqlite3.Connection) -> set[int]:
        """One ``UPDATE jobs`` per job whose counters moved (inside the
        rows' transaction); returns the jobs touched. Empty afterwards."""
        touched: set[int] = set()
        for job, delta in self._deltas.items():
            moved = [(column, value) for column, value in zip(_COLUMNS, delta, strict=True) if value]
            if moved:
                sets = ", ".join(f"{column} = {column} + ?" for column, _ in moved)
                conn.execute(_FLUSH_SQL.format(sets), (*(value for _, value in moved), job))
            touched.add(job)
        self._deltas.clear()
        return touched


def count_moves(counts: Counts, rows: Iterable[tuple[int, str]], old: str) -> None:
    """Rows returned as (job, new state) by an UPDATE that moved them all
    from ``old`` (give back, fail placed), none into or out of a finished
    state."""
    for job, new in rows:
        counts.move_many(int(job), old, str(new), 1)

"""Checks of a ledger's invariants, shared by the ledger tests."""

from __future__ import annotations

from dlengine.ledger.ledger import Ledger
from dlengine.ledger.states import ObjectState


def check_counters(ledger: Ledger) -> None:
    """Each job's counters equal its rows (the GROUP BY truth)."""
    conn = ledger.connection
    for job in ledger.jobs():
        rows = conn.execute(
            "SELECT state, count(*), coalesce(sum(size), 0) FROM objects WHERE job = ? GROUP BY state", (job.seq,)
        ).fetchall()
        count = {r[0]: r[1] for r in rows}
        size = {r[0]: r[2] for r in rows}
        for state in ObjectState:
            counter = "failed_cnt" if state is ObjectState.FAILED else f"{state.value}_cnt"
            assert getattr(job, counter) == count.get(state.value, 0), (job.id, state, job)
        assert job.scheduled_cnt == sum(count.values()), job
        assert job.bytes_done == size.get("done", 0) + size.get("skipped", 0), job
        assert job.bytes_total == sum(size.values()), job
        # -1: a backend job still being listed (AIStore's "unknown")
        assert job.total >= job.scheduled_cnt or (job.total == -1 and not job.all_dispatched), job
        if job.state == "aborted":
            assert count.get("pending", 0) == 0, job  # never a pending row under an aborted job
            # it looks finished (AIStore's finished_time) exactly when nothing runs any more
            assert (job.finished_time is None) == (count.get("running", 0) > 0), job
        if job.state == "finished":
            assert count.get("pending", 0) == count.get("running", 0) == 0, job

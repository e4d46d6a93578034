"""The log lines of an ended job: written by the supervisor, and by a
command that ran its job itself (``supervisor.inline``), which should not
import the supervisor (its dispatcher, pools, subprocess) for them."""

from __future__ import annotations

import logging

from dlengine.ledger.ledger import Ledger
from dlengine.ledger.models import JobRecord
from dlengine.ledger.states import ACTIVE_JOB_STATES

log = logging.getLogger("dlengine.supervisor")

FAILURES_LOGGED = 20  # failed objects named in the log when a job ends


def log_ended(ledger: Ledger, ended: list[JobRecord], logged: set[str]) -> None:
    """Each ended job once, in the log (and on ``run``'s stderr): its
    failed objects with their reasons, the first FAILURES_LOGGED of them
    (``logged``: the ids already logged). The supervisor's, and a job run
    in the command that waits for it (``supervisor.inline``)."""
    for job in ended:
        if job.id in logged or job.state in ACTIVE_JOB_STATES:
            continue
        logged.add(job.id)
        done = job.done_cnt + job.skipped_cnt
        if not job.unfinished:
            log.info("job %s %s: %d/%d objects stored", job.id, job.state, done, job.total)
            continue
        reason = f" ({job.error})" if job.error else ""
        log.warning(
            "job %s %s%s: %d/%d objects stored, %d failed, %d aborted",
            job.id, job.state, reason, done, job.total, job.failed_cnt, job.aborted_cnt,
        )  # fmt: skip
        for row in ledger.objects(job.seq, ("failed",), FAILURES_LOGGED):
            log.warning("job %s: %s failed: %s", job.id, row.name, row.error)
        if job.failed_cnt > FAILURES_LOGGED:
            log.warning(
                "job %s: ... and %d more: dlengine show %s -v", job.id, job.failed_cnt - FAILURES_LOGGED, job.id
            )

"""States of jobs and objects as stored in the ledger."""

from __future__ import annotations

from enum import Enum


class JobState(str, Enum):
    PENDING = "pending"  # submitted, nothing claimed yet
    RUNNING = "running"  # at least one object claimed
    FINISHED = "finished"  # every object done, skipped or failed
    ABORTED = "aborted"  # stopped by the user or by a fatal error


ACTIVE_JOB_STATES = (JobState.PENDING.value, JobState.RUNNING.value)


class ObjectState(str, Enum):
    PENDING = "pending"  # waiting to be claimed (maybe after next_try)
    RUNNING = "running"  # claimed by a worker that holds a lease
    DONE = "done"  # in place under its name and in the catalog
    SKIPPED = "skipped"  # already stored and unchanged at the source
    FAILED = "failed"  # gave up; error says why
    ABORTED = "aborted"  # the job was aborted before it finished

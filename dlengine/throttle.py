"""Bandwidth limits: one token bucket per job, shared by every process.

``limits.bytes_per_hour`` holds for the job as a whole, however many worker
processes and mountpaths serve it, so the bucket lives in the ledger (table
``throttle``, migration 0003). Its ``tokens`` may go negative: a taker
reserves what it needs in one short ``BEGIN IMMEDIATE`` transaction
(``ledger.throttle``, the SQL) and then
sleeps until the refill has paid the debt. Nobody polls an empty bucket, and
concurrent takers, in any process, are served in the order they asked: the
debt is the queue. In steady state the bucket is always in debt, so the job
gets exactly the refill rate, whatever the scheduling jitter of its threads.

Each worker process keeps one :class:`Throttle` per limited job. It takes
tokens from the ledger in slices of about a quarter of a second of the
job's rate and hands them to its download threads chunk by chunk: a few
transactions a second per job and process, however small the reads.
Unlimited jobs never get a throttle: they pay nothing, not even a lock.

Accuracy: an idle bucket holds at most ``BURST_SECONDS`` of the rate, and a
new bucket starts empty, so over a minute the job's bytes are within a
fraction of a percent of the rate, plus one read per connection (a chunk is
paid for after it was read) and what the kernel buffers on each socket.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from pathlib import Path

from dlengine.cancel import Flag
from dlengine.ledger.models import Task
from dlengine.ledger.throttle import TokenBuckets

__all__ = ["Throttle", "Throttles", "read_size"]

SLICE_SECONDS = 0.25
"""Tokens a process takes from the ledger at once, in seconds of the rate:
few transactions, and little reserved but unused when a process stops."""

BURST_SECONDS = 0.25
"""What an idle bucket may save up, in seconds of the rate. Enough to absorb
the gap between two objects, small enough to keep a minute within ±5%."""

READ_SECONDS = 1 / 16
"""A limited job reads about this much of its rate at a time, so a slow job
never swallows a whole default chunk (1 MiB) ahead of its limit."""

MIN_READ = 4096

MAX_READ = 64 << 10
"""Larger reads make Linux grow the socket's receive buffer: measured on
loopback, 1 MiB reads let 3.6 MB pile up in the kernel per connection, 32 KiB
reads keep it at the default 128 KiB. Bytes in that buffer have left the
source, so they are a burst the limit does not see."""


def read_size(bytes_per_hour: int, chunk_size: int) -> int:
    """How much a download of this job reads at a time: ``chunk_size``
    unless the job is limited, then about ``READ_SECONDS`` of its rate."""
    if bytes_per_hour <= 0:
        return chunk_size
    wanted = int(bytes_per_hour / 3600 * READ_SECONDS)
    return max(min(MIN_READ, chunk_size), min(wanted, MAX_READ, chunk_size))


class Throttle:
    """One limited job in one process: hands out tokens taken from the
    job's shared bucket a slice at a time, spread evenly over the time the
    slice is paid for."""

    def __init__(self, ledger: TokenBuckets, job: int, bytes_per_hour: int, read: int) -> None:
        self.job = job
        self.rate = bytes_per_hour / 3600
        self._ledger = ledger
        self._slice = max(float(read), self.rate * SLICE_SECONDS)
        self._burst = max(float(read), self.rate * BURST_SECONDS)
        self._lock = threading.Lock()
        self._credit = 0.0  # tokens taken from the ledger, not yet handed out
        self._paid = 0.0  # time.monotonic() when the last of them is paid for

    def take(self, nbytes: int, cancel: Flag | None = None) -> None:
        """Block until ``nbytes`` more may be downloaded, or ``cancel`` is
        set (an abort must not wait for a slow job's next slice)."""
        delay = self._reserve(nbytes) - time.monotonic()
        if delay <= 0:
            return
        if cancel is None:
            time.sleep(delay)
        else:
            cancel.wait(delay)

    def _reserve(self, nbytes: int) -> float:
        """Hand out ``nbytes`` of credit, taking a slice first if needed;
        returns the monotonic time at which they are paid for.

        Credit is paid for byte by byte up to ``_paid``, so ``nbytes`` are
        paid once only the credit left after them is still owed. Handing a
        whole slice out at once instead would make the reads bursty, and
        Linux answers bursty reads by growing the socket's receive buffer.
        """
        with self._lock:
            if self._credit < nbytes:
                amount = max(self._slice, nbytes - self._credit)
                wait = self._ledger.take(self.job, amount, self.rate, self._burst)
                self._paid = max(self._paid, time.monotonic() + wait)
                self._credit += amount
            self._credit -= nbytes
            return self._paid - self._credit / self.rate


class Throttles:
    """The throttles of one worker process: one per limited job it serves,
    all sharing one ledger connection opened on first use."""

    def __init__(self, ledger_path: Path, chunk_size: int) -> None:
        self._ledger = TokenBuckets(ledger_path)
        self._chunk_size = chunk_size
        self._jobs: dict[str, Throttle] = {}
        self._lock = threading.Lock()

    def read_size(self, bytes_per_hour: int) -> int:
        """The read size for a download of a job with this limit."""
        return read_size(bytes_per_hour, self._chunk_size)

    def hook(self, task: Task, cancel: Flag | None = None) -> Callable[[int], None] | None:
        """The per-chunk hook for ``transfer.Job.throttle`` of a download of
        ``task``; None (no cost at all) when its job is unlimited."""
        if task.bytes_per_hour <= 0:
            return None
        return functools.partial(self.get(task.job_id, task.job_seq, task.bytes_per_hour).take, cancel=cancel)

    def get(self, job_id: str, seq: int, bytes_per_hour: int) -> Throttle:
        """The throttle of a job in this process. Keyed by the job's id:
        SQLite may give a removed job's ``seq`` to the next job."""
        with self._lock:
            throttle = self._jobs.get(job_id)
            if throttle is None:
                throttle = Throttle(self._ledger, seq, bytes_per_hour, self.read_size(bytes_per_hour))
                self._jobs[job_id] = throttle
            return throttle

    def close(self) -> None:
        self._ledger.close()

"""The Dask executor: downloads on a Dask distributed cluster
(``--executor dask://HOST:PORT``), the ledger kept by the supervisor.

A thread of the supervisor claims rows like a local worker does (one owner
for the whole cluster, so ``limits.connections`` holds through the claims),
groups them by job into batches, and submits ``run_batch`` to the cluster.
On a Dask worker the batch runs ``work.run_task`` (the function the local
pools run) in threads, each object into a scratch directory, uploaded to
the job's cloud bucket, and the outcomes come back as the future's result.
Only this thread touches the ledger (``Ledger``): it reports outcomes with ``report``
and renews the leases of everything on the cluster every second.

- A worker that dies: the scheduler runs its tasks again elsewhere. The
  batch marks itself started on the scheduler (task metadata), so a run
  that finds the mark is a re-execution: its objects count one more attempt
  and check the destination first (``work.already_stored``): what the dead
  worker uploaded is not fetched again. A future that ends in an error
  anyway (``KilledWorker``, lost) returns its rows to pending as a
  transient error (an object that keeps killing workers fails after
  ``max_attempts``).
- Every batch must show signs of life (``Pulse``: bytes arriving, an
  object ending, a token of a limited job; published on the scheduler as
  the batch's start mark, read for all batches in one round trip a
  second). A batch without one for ``idle_limit`` (a few job timeouts,
  plus what its largest upload in progress may take) is cancelled and its
  rows go back to pending with the attempt counted: a worker that hangs (a
  deadlock, a stopped process) cannot hold a job for ever, and the limit
  does not grow with the batch (a batch of 512 rows got ~2 h before). A
  batch not started yet (queued behind another on its Dask thread) is
  alive while the cluster moves.
- A supervisor that dies: its rows go back to pending on restart; what its
  orphaned tasks uploaded meanwhile is recognised by the object's metadata
  (``work.already_stored``) and not fetched again.
- ``limits.bytes_per_hour``: a token bucket whose refill is the supervisor
  (``Meter``) and whose store is a named ``distributed.Queue`` per job on the
  scheduler; downloads take slices of bytes from it (``QueueThrottle``).
- Destinations must be reachable from every host: only write-through cloud
  buckets. A row of a job into local disk fails the job with the reason.

``distributed`` is imported lazily: without it, ``--executor dask://`` fails
with a ``MissingExtraError`` that names ``dlengine[dask]``.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Any

from dlengine import errors, jobsecrets
from dlengine.config import Settings
from dlengine.ledger.ledger import Ledger
from dlengine.ledger.models import Outcome, Task
from dlengine.ledger.states import ObjectState
from dlengine.storage import remote
from dlengine.supervisor import dask_curl, dask_wire, work
from dlengine.supervisor.dask_curl import LoopOptions

__all__ = ["DaskExecutor", "connect", "refusal", "run_batch", "run_packed", "scheduler_address"]

log = logging.getLogger("dlengine.dask")

EXTRA = "pip install 'dlengine[dask]'"
SCHEME = "dask://"
RENEW_INTERVAL = 1.0
BATCHES_PER_SLOT = 2  # one running, one waiting on each Dask thread
BATCH_OBJECTS = 512  # rows per batch at least: the scheduler's and supervisor's cost is per batch
DEADLINE_BASE = 2.0  # seconds a batch may go quiet beyond its timeouts (start-up, the scheduler)
IDLE_TIMEOUTS = 3  # job timeouts a batch may go without a sign of life (connect, stall, a retried request)
MIN_RATE = 1 << 20  # bytes/s an upload in progress is allowed to go at, at the slowest
STARTED = "dlengine-started"  # task metadata on the scheduler: batches that began running, and their pulse
PULSE_INTERVAL = 1.0  # seconds between a batch's publications of its pulse (when it changed)
PRUNE_INTERVAL = 30.0
POLL = 0.02
SLICE_SECONDS = 0.25  # a token is this much of a job's rate
BURST_SLICES = 2  # what an idle job's queue may save up
TOKEN_PATIENCE = 60.0
RESULT_TIMEOUT = 30.0  # no token for this long: the supervisor is gone


class DaskTaskLost(errors.TransientError):
    default_message = "the Dask task running this object was lost"


def scheduler_address(executor: str) -> str:
    """``dask://HOST:PORT`` -> the scheduler's ``tcp://HOST:PORT``."""
    if not executor.startswith(SCHEME) or ":" not in executor[len(SCHEME) :]:
        raise errors.SpecError("executor", f"{executor!r}: expected 'local' or dask://HOST:PORT")
    return "tcp://" + executor[len(SCHEME) :].rstrip("/")


def refusal(provider: str, job_type: str) -> str | None:
    """Why a job cannot run on a remote executor, or None if it can."""
    if provider in remote.WRITE_THROUGH_PROVIDERS and job_type != "backend":
        return None
    return (
        "a remote executor (dask://) can only store into cloud buckets every host reaches"
        " (s3://, gs://, az://); this job's destination is local disk"
    )


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise errors.MissingExtraError(f"--executor dask:// needs dask.distributed: {EXTRA}") from None
    return distributed


def connect(executor: str, timeout: float = 10.0) -> Any:
    """A ``distributed.Client`` of the scheduler named by ``executor``."""
    address = scheduler_address(executor)
    distributed = _distributed()
    try:
        return distributed.Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise errors.FatalError(f"cannot reach the Dask scheduler at {address}: {exc}") from None


# ------------------------------------------------------------------ on a Dask worker


def run_packed(payload: bytes, ctx: work.Context, options: LoopOptions | None = None) -> bytes:
    """What the supervisor submits: ``run_batch`` with the tasks and the
    outcomes as ``dask_wire`` bytes (Dask pickles a task's arguments and
    result several times on the way, the scheduler twice: a ``bytes`` is
    a copy where 512 dataclasses are thousands of objects)."""
    return dask_wire.pack_outcomes(run_batch(dask_wire.unpack_tasks(payload), ctx, options))


def run_batch(tasks: list[Task], ctx: work.Context, options: LoopOptions | None = None) -> list[Outcome]:
    """Run on a Dask worker: every task of one job, ``ctx.pool_size`` at a
    time, through the process's libcurl loop (``dask_curl``: what it cannot
    fetch goes through ``work.run_task``), the work files in a scratch
    directory removed afterwards (the durable copy is the upload). A
    re-executed batch counts an attempt more, so each object checks the
    destination before fetching."""
    worker = _worker()
    _warn_profiler()
    if worker is not None and _started_before(worker):
        tasks = [replace(t, attempts=t.attempts + 1) for t in tasks]
    pulse = Pulse(worker)
    local_dir = str(worker.local_directory) if worker is not None else None
    scratch = Path(tempfile.mkdtemp(prefix="dlengine-", dir=local_dir))
    try:
        ctx = replace(ctx, workdir=scratch, fsync=False, progress=pulse.progress)
        return dask_curl.run(tasks, ctx, options or LoopOptions(), lambda t: _throttled(t, ctx, worker, pulse), pulse)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class Pulse:
    """A batch's signs of life for the supervisor (``dask_curl.Heartbeat``):
    a count of beats (bytes arrived, an object ended, a token taken) and
    the seconds its largest upload in progress may take at ``MIN_RATE``,
    published as the batch's start mark on the scheduler at most every
    ``PULSE_INTERVAL``, only when it changed (one round trip then)."""

    def __init__(self, worker: Any) -> None:
        self._worker = worker
        self._key = worker.get_current_task() if worker is not None else None
        self._beats = 0  # bumped from several threads: a lost bump still leaves a change
        self._uploads: dict[int, int] = {}
        self._lock = threading.Lock()
        self._sent: list[float] | None = None
        self._next = 0.0

    def beat(self) -> None:
        self._beats += 1

    def progress(self, _done: int, _size: int | None) -> None:
        """A transfer's progress (``transfer.Progress``): bytes arrived."""
        self._beats += 1

    def carrying(self, key: int, size: int | None) -> None:
        with self._lock:
            if size is None:
                self._uploads.pop(key, None)
            else:
                self._uploads[key] = size
        self._beats += 1

    def mark(self) -> list[float]:
        with self._lock:
            largest = max(self._uploads.values(), default=0)
        return [self._beats, largest / MIN_RATE]

    def publish(self) -> None:
        if self._key is None:
            return
        now = time.monotonic()
        if now < self._next:
            return
        mark = self.mark()
        if mark == self._sent:
            return
        self._next, self._sent = now + PULSE_INTERVAL, mark
        try:
            self._worker.client.set_metadata([STARTED, self._key], mark)
        except Exception:  # the supervisor's limit covers a missed pulse
            log.debug("could not publish the pulse of %s", self._key, exc_info=True)


_warned: list[bool] = []


def _warn_profiler() -> None:
    """Once per worker process: its profiler calls ``sys._current_frames``,
    which deadlocks against ``Thread.start`` in CPython 3.11.0-3.11.8 and
    3.12.0-3.12.2 (gh-106883): a worker hung that way once held a job."""
    if _warned or not profiler_deadlocks(sys.version_info[:3]):
        return
    _warned.append(True)
    import dask

    if dask.config.get("distributed.worker.profile.enabled", True):
        log.warning(
            "Python %s can deadlock with the Dask worker profiler (gh-106883): "
            "set DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False on the workers",
            ".".join(map(str, sys.version_info[:3])),
        )


def profiler_deadlocks(version: tuple[int, ...]) -> bool:
    """The CPython versions of gh-106883 (fixed in 3.11.9, 3.12.3, 3.13)."""
    return (3, 11, 0) <= version < (3, 11, 9) or (3, 12, 0) <= version < (3, 12, 3)


def _started_before(worker: Any) -> bool:
    """Whether this task ran before (on a worker that died): the mark is
    set on the scheduler when a batch starts; two round trips per batch."""
    key = worker.get_current_task()
    if key is None:
        return False
    client = worker.client
    if client.get_metadata([STARTED, key], None) is not None:
        return True
    client.set_metadata([STARTED, key], 1)
    return False


def _worker() -> Any:
    """The Dask worker running this task (None when called directly). Only
    the task's own thread can ask: download threads are not Dask's."""
    try:
        return _distributed().get_worker()
    except ValueError:
        return None


def _throttled(task: Task, ctx: work.Context, worker: Any, pulse: Pulse) -> work.Context:
    if task.bytes_per_hour <= 0 or worker is None:
        return ctx
    take = QueueThrottle.of(task.job_id, worker.client).take

    def taken(nbytes: int) -> None:  # a slow limit's tokens are signs of life too
        take(nbytes)
        pulse.beat()

    return replace(ctx, throttle=taken)


class QueueThrottle:
    """One limited job in one Dask worker process: takes slices of bytes
    from the job's token queue and hands them to its downloads chunk by
    chunk. Threads of the job queue up on the lock: first come, first served."""

    _all: dict[str, QueueThrottle] = {}
    _all_lock = threading.Lock()

    def __init__(self, job_id: str, client: Any) -> None:
        self.job_id = job_id
        self._client = client
        self._lock = threading.Lock()
        self._credit = 0

    @classmethod
    def of(cls, job_id: str, client: Any) -> QueueThrottle:
        with cls._all_lock:
            if job_id not in cls._all:
                cls._all[job_id] = cls(job_id, client)
            return cls._all[job_id]

    def take(self, nbytes: int) -> None:
        """Block until ``nbytes`` more may be downloaded."""
        with self._lock:
            while self._credit < nbytes:
                self._credit += self._next_slice()
            self._credit -= nbytes

    def _next_slice(self) -> int:
        tokens = _distributed().Queue(queue_name(self.job_id), client=self._client)
        deadline = time.monotonic() + TOKEN_PATIENCE
        while time.monotonic() < deadline:
            try:
                return int(tokens.get(timeout=1.0))
            except TimeoutError:
                continue
        raise DaskTaskLost("no bandwidth tokens from the supervisor for a minute")


def queue_name(job_id: str) -> str:
    return f"dlengine-bytes-{job_id}"


# ------------------------------------------------------------------ in the supervisor


class Meter:
    """The refill of every limited job's token bucket: puts one slice of
    ``SLICE_SECONDS`` of the job's rate into its queue per ``SLICE_SECONDS``,
    while the job has rows on the cluster. A queue holding ``BURST_SLICES``
    is full: the tokens of an idle job are not saved up."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._queues: dict[str, Any] = {}
        self._owed: dict[str, tuple[float, float]] = {}  # job -> (bytes owed, since)

    def feed(self, limited: dict[str, int]) -> None:
        """``limited``: job id -> bytes_per_hour of jobs with rows in flight."""
        now = time.monotonic()
        for job_id, per_hour in limited.items():
            owed, since = self._owed.get(job_id, (0.0, now))
            rate = per_hour / 3600
            owed += rate * (now - since)
            size = max(4096.0, rate * SLICE_SECONDS)
            if owed >= size:
                owed = self._put(job_id, owed, size)
            self._owed[job_id] = (owed, now)
        self._owed = {j: v for j, v in self._owed.items() if j in limited}

    def _put(self, job_id: str, owed: float, size: float) -> float:
        queue = self._queues.get(job_id)
        if queue is None:
            queue = self._queues[job_id] = _distributed().Queue(queue_name(job_id), client=self._client)
        room = BURST_SLICES - int(queue.qsize())
        while owed >= size and room > 0:
            queue.put(int(size))
            owed -= size
            room -= 1
        return owed if room > 0 else 0.0  # full: what was not taken is lost


@dataclass
class Batch:
    """Rows on the cluster as one Dask task, and its last sign of life."""

    tasks: list[Task]
    timeout: float  # the job's, seconds
    moved: float  # time.monotonic() of its last sign of life (its submission at first)
    mark: Any = None  # its start mark (``Pulse``) as last seen; None: not started yet


def full_batch(threads: int) -> int:
    """Rows per full batch: a multiple of a worker's download threads, at
    least ``BATCH_OBJECTS`` (what a batch costs the supervisor and the
    scheduler is mostly per batch, see docs/scale-out.md)."""
    threads = max(1, threads)
    return threads * math.ceil(BATCH_OBJECTS / threads)


def batch_size(claimed: int, threads: int, slots: int) -> int:
    """Rows per batch for ``claimed`` rows: full batches when there are
    plenty, else split evenly over the cluster's ``slots`` Dask threads (40
    large objects are not one batch on one worker while the others idle)."""
    threads = max(1, threads)
    even = threads * math.ceil(claimed / max(1, slots) / threads)
    return max(threads, min(full_batch(threads), even))


def idle_limit(timeout: float, mark: Any) -> float:
    """Seconds a batch may go without a sign of life: ``IDLE_TIMEOUTS``
    job timeouts (a healthy download moves bytes or fails within about
    two: connect, stall) and ``DEADLINE_BASE``, plus what its largest
    upload in progress may take at ``MIN_RATE`` (the pulse says). Not its
    size: a batch of 512 small objects got ~2 h under the size-based
    deadline."""
    uploading = float(mark[1]) if isinstance(mark, (list, tuple)) and len(mark) == 2 else 0.0
    return DEADLINE_BASE + IDLE_TIMEOUTS * timeout + uploading


class DaskExecutor(threading.Thread):
    """The supervisor's side: claim, submit batches, report, renew."""

    def __init__(self, settings: Settings, client: Any, mountpath_ids: list[int], stop: threading.Event) -> None:
        super().__init__(name="dask-executor", daemon=True)
        self.settings = settings
        self.client = client
        self.mountpath_ids = mountpath_ids
        self.stop = stop
        self.owner = f"{os.uname().nodename}:dask:{secrets.token_hex(4)}"
        self.error: str | None = None
        self._inflight: dict[Any, Batch] = {}  # future -> its rows
        self._moved = time.monotonic()  # the cluster's last sign of life (any batch)
        self._tag = secrets.token_hex(4)  # in every task key of this supervisor
        self._next_prune = time.monotonic() + PRUNE_INTERVAL
        self._headers: dict[str, dict[str, str]] = {}
        self._meter = Meter(client)
        self._slots = (0, 0.0)  # (threads on the cluster, when asked)
        self._options = LoopOptions(settings.segment_threshold, settings.min_rate, settings.max_object_size)

    def run(self) -> None:
        ledger = Ledger.open(self.settings.ledger_path)
        try:
            self._loop(ledger)
        except Exception as exc:  # the supervisor reports it and stops
            log.exception("the Dask executor stopped")
            self.error = f"Dask executor: {type(exc).__name__}: {exc}"
            self.stop.set()
        finally:
            self._shutdown(ledger)
            ledger.close()

    def _loop(self, ledger: Ledger) -> None:
        next_renew = 0.0
        while not self.stop.is_set():
            self._collect(ledger)
            self._expire(ledger)
            if time.monotonic() >= next_renew:
                self._renew(ledger)
                self._watch()
                next_renew = time.monotonic() + RENEW_INTERVAL
            self._meter.feed(self._limited())
            handed = self._hand_out(ledger)
            self.stop.wait(POLL if handed or self._inflight else 0.2)

    def _collect(self, ledger: Ledger) -> None:
        done = [f for f in self._inflight if f.done()]
        if not done:
            return
        results = self._gather([f for f in done if f.status == "finished"])
        self._moved = time.monotonic()
        outcomes: list[Outcome] = []
        for future in done:
            tasks = self._inflight.pop(future).tasks
            got = results.get(future.key)
            outcomes += got if got is not None else self._lost(future, tasks)
        for job_id in ledger.report(self.owner, outcomes):
            log.info("job %s finished", job_id)

    def _gather(self, futures: list[Any]) -> dict[Any, list[Outcome]]:
        """The results of finished batches in one round trip (not one per
        batch), given up after ``RESULT_TIMEOUT`` (seen under load: never
        wait for ever); on any error each is asked on its own."""
        if not futures:
            return {}
        try:
            results = self.client.sync(self.client._gather, futures, callback_timeout=RESULT_TIMEOUT)
            return {f.key: dask_wire.unpack_outcomes(r) for f, r in zip(futures, results, strict=True)}
        except Exception:  # one of them failed or timed out: each on its own
            log.debug("gathering %d batches failed; one by one", len(futures), exc_info=True)
        gathered: dict[Any, list[Outcome]] = {}
        for future in futures:
            try:
                gathered[future.key] = dask_wire.unpack_outcomes(future.result(timeout=RESULT_TIMEOUT))
            except Exception:  # noqa: BLE001 - _lost says why
                continue
        return gathered

    def _lost(self, future: Any, tasks: list[Task]) -> list[Outcome]:
        reason = "cancelled"
        if future.status == "finished":
            reason = f"its result did not arrive within {RESULT_TIMEOUT:.0f} s"
        elif future.status != "cancelled":
            reason = repr(future.exception(timeout=RESULT_TIMEOUT))
        log.warning("Dask task %s of %d object(s) failed: %s", future.key, len(tasks), reason)
        ctx = self._context(tasks[0].job_id)
        return [work.failure(t, DaskTaskLost(f"Dask task lost: {reason}"), ctx) for t in tasks]

    def _watch(self) -> None:
        """Every batch's pulse, in one round trip: a changed mark is a sign
        of life (of the batch and of the cluster)."""
        marks = self.client.get_metadata([STARTED], {})
        now = time.monotonic()
        for future, batch in self._inflight.items():
            mark = marks.get(future.key)
            if mark is not None and mark != batch.mark:
                batch.mark, batch.moved = mark, now
                self._moved = now

    def _quiet_for(self, batch: Batch, now: float) -> float | None:
        """How long a batch has shown no sign of life, if past its limit.
        One not started yet waits behind others: alive while the cluster
        moves (a hung worker's queued batch goes once the cluster is idle)."""
        since = batch.moved if batch.mark is not None else max(batch.moved, self._moved)
        quiet = now - since
        return quiet if quiet > idle_limit(batch.timeout, batch.mark) else None

    def _expire(self, ledger: Ledger) -> None:
        """Batches quiet for longer than their limit: cancelled, their rows
        back to pending with the attempt counted (a late upload of theirs
        is recognised by the next attempt)."""
        now = time.monotonic()
        late = [(f, q) for f, batch in self._inflight.items() if (q := self._quiet_for(batch, now)) is not None]
        outcomes: list[Outcome] = []
        for future, quiet in late:
            tasks = self._inflight.pop(future).tasks
            future.cancel()
            log.warning(
                "Dask task %s of %d object(s) made no progress for %.0f s: cancelled", future.key, len(tasks), quiet
            )
            ctx = self._context(tasks[0].job_id)
            lost = DaskTaskLost(f"the Dask batch made no progress for {quiet:.0f} s (a worker hung or died): cancelled")
            outcomes += [work.failure(t, lost, ctx) for t in tasks]
        if outcomes:
            ledger.report(self.owner, outcomes)
        if now >= self._next_prune:
            self._prune_marks()
            self._next_prune = now + PRUNE_INTERVAL

    def _prune_marks(self) -> None:
        """Forget the start marks of this supervisor's batches that are no
        longer on the cluster (a lost mark only costs a re-run its check)."""
        marks = self.client.get_metadata([STARTED], {})
        live = {str(f.key) for f in self._inflight}
        mine = f"dlengine-{self._tag}-"
        kept = {k: v for k, v in marks.items() if not str(k).startswith(mine) or k in live}
        if len(kept) < len(marks):
            self.client.set_metadata([STARTED], kept)

    def _renew(self, ledger: Ledger) -> None:
        aborted = ledger.renew(self.owner, self.settings.lease_seconds, {})
        if not aborted:
            return
        stopped = [f for f, batch in self._inflight.items() if all(t.id in aborted for t in batch.tasks)]
        outcomes = []
        for future in stopped:
            future.cancel()
            tasks = self._inflight.pop(future).tasks
            outcomes += [Outcome(t.id, ObjectState.ABORTED, error="aborted") for t in tasks]
        ledger.report(self.owner, outcomes)

    def _limited(self) -> dict[str, int]:
        """Limited jobs on the cluster (a batch is one job's: its first row
        speaks for it, so a loop costs per batch, not per row)."""
        firsts = (batch.tasks[0] for batch in self._inflight.values())
        return {t.job_id: t.bytes_per_hour for t in firsts if t.bytes_per_hour > 0}

    def _hand_out(self, ledger: Ledger) -> int:
        room = self._capacity() - sum(len(batch.tasks) for batch in self._inflight.values())
        tasks: list[Task] = []
        for mountpath_id in self.mountpath_ids:
            if room - len(tasks) > 0:
                tasks += ledger.claim(mountpath_id, self.owner, room - len(tasks), self.settings.lease_seconds)
        tasks = self._refuse(ledger, tasks)
        for batch in _batches(tasks, self._spread(len(tasks))):
            self._submit(ledger, batch)
        return len(tasks)

    def _batch_size(self) -> int:
        return full_batch(self.settings.threads_per_worker)

    def _spread(self, claimed: int) -> int:
        return batch_size(claimed, self.settings.threads_per_worker, self._slots[0])

    def _capacity(self) -> int:
        count, asked = self._slots
        if time.monotonic() - asked > 2.0:
            count = sum(self.client.nthreads().values())
            self._slots = (count, time.monotonic())
        return max(1, count) * BATCHES_PER_SLOT * self._batch_size()

    def _refuse(self, ledger: Ledger, tasks: list[Task]) -> list[Task]:
        """Rows of jobs into local disk fail their job, with the reason."""
        refused = [(t, refusal(t.provider, t.job_type)) for t in tasks]
        outcomes = [Outcome(t.id, ObjectState.FAILED, error=why, fatal=True) for t, why in refused if why]
        if outcomes:
            ledger.report(self.owner, outcomes)
        return [t for t, why in refused if not why]

    def _submit(self, ledger: Ledger, batch: list[Task]) -> None:
        ctx = self._context(batch[0].job_id, ledger)
        key = f"dlengine-{self._tag}-{batch[0].job_id}-{batch[0].id}-{secrets.token_hex(3)}"
        payload = dask_wire.pack_tasks(batch)
        future = self.client.submit(run_packed, payload, ctx, self._options, key=key, pure=False, retries=0)
        timeout = max(t.timeout or self.settings.default_timeout for t in batch)
        self._inflight[future] = Batch(batch, timeout, time.monotonic())

    def _context(self, job_id: str, ledger: Ledger | None = None) -> work.Context:
        if ledger is not None and job_id not in self._headers:
            self._headers[job_id] = _job_headers(ledger, self.settings, job_id)
        s = self.settings
        return work.Context(
            workdir=s.home / "dask-scratch",  # replaced on the worker
            headers=self._headers.get(job_id, {}),
            timeout=s.default_timeout,
            chunk_size=s.chunk_size,
            fsync=False,
            max_attempts=s.max_attempts,
            pool_size=s.threads_per_worker,
        )

    def _shutdown(self, ledger: Ledger) -> None:
        """Forget the cluster's tasks (they may still finish and upload: a
        later attempt recognises those objects) and give their rows back."""
        for future in self._inflight:
            future.cancel()
        self._inflight.clear()
        ledger.give_back()
        try:
            self._prune_marks()
        except Exception:  # the scheduler may be the reason we stop
            log.debug("could not prune the start marks", exc_info=True)


def _job_headers(ledger: Ledger, settings: Settings, job_id: str) -> dict[str, str]:
    headers = ledger.request_headers(job_id)
    headers.update(jobsecrets.load(settings.secrets_dir, job_id))
    return headers


def _batches(tasks: Iterable[Task], size: int) -> Iterator[list[Task]]:
    """Batches of at most ``size`` tasks, each of one job."""
    by_job: dict[str, list[Task]] = {}
    for task in tasks:
        by_job.setdefault(task.job_id, []).append(task)
    for group in by_job.values():
        it = iter(group)
        while batch := list(islice(it, max(1, size))):
            yield batch

"""A worker process: claims objects of one mountpath, downloads them,
reports outcomes in batches, renews its leases.

Only the main thread (the ledger thread) touches SQLite. Plain HTTP(S)
objects, HF files (``sources.hfroute``) and cloud objects whose GET their
source can sign (``sources.signed``), go to one libcurl loop on its own
thread (``engine.curl``); the others (SDK sources without a signed GET,
write-through buckets, throttled jobs) to download threads. Both hand
their outcomes back through one queue; the sync thread makes a batch
durable (one syncfs of the mountpath, or an fsync per directory) before
the ledger thread records it. The system shows the threads as
``dl-curl``, ``dl-sync`` and ``dl-get`` (``top -H``, ``ps -L``); the
ledger thread keeps the process's name, ``dlengine-worker``.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from dlengine import jobsecrets, process, providers, startup, throttle, transfer
from dlengine.cancel import Cancel
from dlengine.config import Settings
from dlengine.engine import curl
from dlengine.ledger import claims, db, jobs
from dlengine.ledger.models import Outcome, Task
from dlengine.ledger.states import ObjectState
from dlengine.logredact import install_log_redaction
from dlengine.records import field, mutable
from dlengine.sources.base import ObjectInfo, SignedGet
from dlengine.sources.signed import signed_get
from dlengine.storage import durable, layout
from dlengine.supervisor import wake, work

log = logging.getLogger("dlengine.worker")

RENEW_INTERVAL = 1.0  # also how fast an abort reaches running downloads
REPORT_INTERVAL = 0.05
MAX_BATCH = 256
# Outcomes ready to be recorded wait for this many more of them, for at most
# REPORT_HOLD seconds (or until every claimed row has one): one transaction
# records them all, and a transaction's cost is mostly fixed (per object,
# claim and report in batches of 16 cost the ledger thread ~45 us, in
# batches of 64 ~23: bench/floors.py's ledger layer; a whole run's ledger
# threads, 10 KiB objects, 82 -> 66 us an object: bench/RESULTS.md). Nothing
# is recorded before it is durable; the ledger only learns of it later. Not
# while a job with a connection limit has rows here: an unrecorded row
# holds one of its connections in the ledger's count.
REPORT_BATCH = 128
REPORT_HOLD = 0.1
FEW_FILES = 8  # a batch of at most this many installed files: fsyncs, not a syncfs
# a sync batch that starts with few outcomes waits this long for more: one
# syncfs for the objects of 20 ms, not an fsync per file for each of them
SYNC_GATHER = 0.02
# an idle worker looks this often whether another connection wrote to the
# ledger (``wait_for_ledger``): new rows are claimed then, not at the end of
# the claim backoff (up to 0.5 s). Every 10 ms for its first 5 s idle
# (a listing's rows, the next job of a script), then every 0.1 s: at 10 ms
# an idle worker took ~25 ms of CPU a second, as much as 6 of them before.
IDLE_LOOK = 0.01
IDLE_LOOK_LATER = 0.1
IDLE_QUICK = 5.0  # seconds idle before looking at IDLE_LOOK_LATER (a lingering supervisor's default wait)
LOOP_FAILED = 3  # the exit code of a worker whose libcurl loop failed (a dead worker to its supervisor)
FAILED_WAIT = 1.0  # seconds such a worker waits for the outcomes already on their way (through the sync)
# The libcurl loop keeps DLENGINE_THREADS objects in flight, and as many
# more as end in AHEAD_SECONDS at the current pace, at most WIDEST times the
# threads: 16 to 64 by default (64 against 16: 10,000 x 10 KiB from nginx
# 24% faster, 2,000 x 50 KiB over a lossy 40 ms link twice as fast:
# bench/RESULTS.md, 2026-12-07 night). Opened all at once they stalled a
# simple server for up to a minute (a fake Hub on ThreadingHTTPServer, listen
# queue 5: 29-62 s instead of 3.7 for 2,001 small files); the loop opens
# them ``curl.CONNECTING`` at a time (2026-12-08). The rows claimed beyond them
# wait in the loop's backlog, each started the moment a transfer ends: as
# many as end in AHEAD_SECONDS, at most AHEAD times the threads (without
# it, 40% of the loop's waits found nothing in flight: the ledger thread's
# next claim had not come). Objects that take seconds leave no room ahead
# and no connections beyond the threads: their rows are not held here
# while another worker is free.
AHEAD_SECONDS = 0.25
AHEAD = 3
PACE_LEAST = 0.05  # seconds: the shortest window the pace is measured over
TURNED_AWAY = 16  # objects in flight per loop at most once a server answered 429 or 503
WIDEST = 4  # times DLENGINE_THREADS the loop may keep in flight, as many as end in AHEAD_SECONDS


@mutable
class _Running:
    """An object being downloaded: its cancel flag and progress."""

    task: Task
    cancel: Cancel = field(default_factory=Cancel)
    stopping: bool = False  # cancelled because the worker stops, not an abort
    progress: tuple[int, int | None] = (0, None)


class Worker:
    def __init__(self, settings: Settings, mountpath_id: int, mountpath: Path, owner: str, wake_fd: int = -1) -> None:
        """``wake_fd``: the supervisor's wake pipe, poked when a job ends."""
        self.settings = settings
        self.wake_fd = wake_fd
        self.mountpath_id = mountpath_id
        self.mountpath = mountpath
        self.owner = owner
        self.stop = threading.Event()
        # outcomes, or lists of them (the loop's rounds); SimpleQueue: the
        # loop puts one a round, and Queue's put (a Condition's notify, in
        # Python) cost it ~1.5 us each, more with a waiter to wake
        self._results: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # outcomes whose renames are durable (the syncer fsynced their directories)
        self._synced: queue.SimpleQueue[Any] = self._results
        self._running: dict[int, _Running] = {}
        self._job_headers: dict[str, dict[str, str]] = {}
        self._threads = settings.threads_per_worker
        # Claimed rows queued for the download threads, so that they never
        # wait for a claim (queued rows count as running for the connection
        # limits and have their leases renewed like the others). Only while
        # objects finish quickly: a row queued behind long downloads would
        # wait there instead of going to another worker's free thread.
        self._ended = 0  # outcomes handed on so far (under _stored_lock)
        self._ended_mark, self._mark_at = 0, time.monotonic()  # ``_ended`` at the last renewal, and when
        # rows stored (by the loop, the threads) and not recorded yet: they
        # wait for a sync and a report, not for a connection (a failure keeps
        # its place until recorded: a fatal one stops its job before more
        # of it are claimed)
        self._stored: set[int] = set()
        self._stored_lock = threading.Lock()
        self._rate = 0.0  # outcomes a second over the last renewal's window
        self._throttles = throttle.Throttles(settings.ledger_path, settings.chunk_size)
        self._batch_sync = settings.fsync and settings.sync == "batch" and durable.syncfs_reports_errors()
        self._file_sync = settings.fsync and not self._batch_sync
        self._drop_cache = not settings.keep_cache  # (``make_durable``)
        self._curl = curl.CurlLoop(
            None,
            settings.segment_threshold,
            settings.min_rate,
            settings.max_object_size,
            report_many=self._curl_done,
            connections=self._threads,
            fewest=min(self._threads, TURNED_AWAY),
        )
        self._unfreed = 0  # stored outcomes since the ledger thread was last told (under _stored_lock)
        self._held: list[work.Result] = []  # outcomes ready to be recorded, waiting for more (``_gathered``)
        self._held_since = 0.0  # when the first of them came (time.monotonic)
        self._limited = 0  # rows here of jobs with a connection limit (their outcomes are not held)
        self._bare: set[int] = set()  # rows whose work file has no .meta to remove
        # rows in the libcurl loop that take more than one connection (large
        # objects, in ranged segments): their connections beyond the first
        self._extra: dict[int, int] = {}
        # the row this worker claimed alone (a worker died with it: should
        # it kill this one too, it takes no other object down with it)
        self._alone: int | None = None
        self._downloaders: list[threading.Thread] = []  # (started by the ledger thread, at the first object for them)
        # what broke the libcurl loop, if it failed: the rows it held are
        # left running for the supervisor to give back as a dead worker's
        self.failed: BaseException | None = None

    def run(self) -> None:
        conn = db.connect(self.settings.ledger_path)
        layout.work_dir(self.mountpath).mkdir(parents=True, exist_ok=True)
        syncer = None
        if self.settings.fsync:
            self._synced = queue.SimpleQueue()
            syncer = threading.Thread(target=self._sync_loop, name="sync", daemon=True)
            syncer.start()
        # long-lived download threads fed through a queue (cheaper per object
        # than an executor's submit), started with the first object for them
        pool: _Pool = queue.SimpleQueue()
        loop = threading.Thread(target=self._run_curl, name="curl", daemon=True)
        loop.start()
        try:
            self._loop(conn, pool)
        finally:
            try:
                self._shutdown(conn)
            finally:
                for _ in self._downloaders:
                    pool.put(None)
                self._curl.stop()
                for thread in [*self._downloaders, loop]:
                    thread.join()
        if syncer is not None:
            self._results.put(_STOP)
            syncer.join(5)
        conn.close()
        self._throttles.close()

    def _start_downloaders(self, pool: _Pool) -> None:
        """The download threads (SDK sources, write-through buckets,
        throttled jobs), once: a worker whose objects all go to the libcurl
        loop starts none (16 threads were 3-6 ms before its first claim)."""
        for i in range(self._threads):
            thread = threading.Thread(target=self._download_loop, args=(pool,), name=f"dl_{i}", daemon=True)
            thread.start()
            self._downloaders.append(thread)

    def _run_curl(self) -> None:
        """The libcurl loop; if it ever fails, the worker stops (and its
        process exits LOOP_FAILED: its rows go back as a dead worker's, the
        supervisor starts another) instead of waiting for outcomes that
        will not come."""
        process.name_thread("dl-curl")
        try:
            self._curl.run()
        except BaseException as exc:  # noqa: BLE001 - logged by the loop; the worker exits non-zero (``failed``)
            self.failed = exc
        finally:
            self.stop.set()

    def _loop(self, conn: sqlite3.Connection, pool: _Pool) -> None:
        next_claim = next_renew = 0.0
        idle = 0.02
        idle_since: float | None = None  # when the worker last had nothing running
        while not self.stop.is_set():
            now = time.monotonic()
            room = self._room(now)
            free = room - len(self._running) + len(self._stored) - self._extra_busy()
            # claim before reporting, in batches of at least half the room
            # (a claim is a transaction: per object, one of 8 cost 17 us,
            # one of 16 12 us) unless some threads would have nothing to do
            if (
                free > 0
                and now >= next_claim
                and (free >= room // 2 or len(self._running) < self._threads)
                and self._alone not in self._running
            ):
                tasks = claims.claim(
                    conn,
                    self.mountpath_id,
                    self.owner,
                    free,
                    self.settings.lease_seconds,
                    self._threshold,
                    sharers=self.settings.workers_for_each_mountpath(),
                    idle=not self._running,
                )
                # (after the claim: an earlier attempt's .meta is there by now)
                kept = layout.work_names(self.mountpath) if tasks else None
                for task in tasks:
                    if task.deaths:  # a worker died with it: nothing else is claimed while it runs
                        self._alone = task.id
                    self._start(conn, pool, task, kept is not None and f"{task.id}.meta" not in kept)
                idle = 0.02 if tasks else min(idle * 2, 0.5)
                next_claim = now if tasks else now + idle
            retry_at = self._report(conn, self._gathered())
            now = time.monotonic()
            if retry_at is not None:  # a retry due soon is claimed then, not after the idle backoff
                next_claim, idle = min(next_claim, now + max(0.0, retry_at - time.time())), 0.02
            if now >= next_renew:
                self._renew(conn)
                next_renew = now + RENEW_INTERVAL
                self._renew_pace(now)
            if self._running:
                idle_since = None
            else:
                idle_since = now if idle_since is None else idle_since
                look = IDLE_LOOK if now - idle_since < IDLE_QUICK else IDLE_LOOK_LATER
                if wait_for_ledger(conn, self.stop, next_claim, look):
                    next_claim, idle = time.monotonic(), 0.02

    def _room(self, now: float) -> int:
        """Rows to hold at most: in flight (on the libcurl loop's
        connections, which follow the pace, or on the download threads)
        and waiting for one."""
        threads, ending = self._threads, int(self._pace(now) * AHEAD_SECONDS)
        if self._downloaders:
            return threads + min(AHEAD * threads, ending)
        self._curl.allow(threads + min((WIDEST - 1) * threads, ending) if threads > 1 else 1)
        return self._curl.connections + min(AHEAD * threads, ending)

    def _renew_pace(self, now: float) -> None:
        """(At a lease renewal) the window's pace becomes the last one's
        and a new window opens."""
        self._rate = self._window_pace(now)
        self._ended_mark, self._mark_at = self._ended, now

    def _pace(self, now: float) -> float:
        """Outcomes a second: over the last renewal's window, or over the
        current one when that is faster (a job's first objects claim ahead
        within ~PACE_LEAST, not after the first renewal, a second later)."""
        return max(self._rate, self._window_pace(now))

    def _window_pace(self, now: float) -> float:
        """Outcomes a second since the last renewal."""
        return (self._ended - self._ended_mark) / max(PACE_LEAST, now - self._mark_at)

    @property
    def _threshold(self) -> int:
        """Claims count large objects as their segments' connections (0 =
        as one): not with a single connection per worker."""
        return self.settings.segment_threshold if self._threads > 1 else 0

    def _extra_busy(self) -> int:
        """Connections taken by large objects beyond one each (not those
        stored and waiting to be recorded)."""
        if not self._extra:
            return 0
        return sum(n for task_id, n in self._extra.items() if task_id not in self._stored)

    def _collect(self, timeout: float) -> list[work.Result]:
        """Outcomes ready to be recorded (their renames durable)."""
        batch: list[work.Result] = []
        for item in _drain(self._synced, timeout):
            if isinstance(item, list):  # a synced batch
                batch += item
            elif item is not _FREED:
                batch.append(item)
        return batch

    def _gathered(self) -> list[work.Result]:
        """The outcomes to record now: none while those ready are fewer than
        REPORT_BATCH, held for less than REPORT_HOLD, and other claimed rows
        are still to have one (the last ones of a job go at once)."""
        wait = REPORT_INTERVAL if self._running else 0
        if self._held:
            wait = max(0.0, min(wait, self._held_since + REPORT_HOLD - time.monotonic()))
        got = self._collect(timeout=wait)
        if got and not self._held:
            self._held_since = time.monotonic()
        self._held += got
        held = len(self._held)
        waiting = held < REPORT_BATCH and held < len(self._running) and not self._limited and not self.stop.is_set()
        if waiting and time.monotonic() < self._held_since + REPORT_HOLD:
            return []
        batch, self._held = self._held, []
        return batch

    def _sync_loop(self) -> None:
        """fsync the directories of renamed objects, a batch at a time, off
        the main thread (which keeps claiming): the renames must be durable
        before the ledger says "done", so a batch goes on only after it."""
        process.name_thread("dl-sync")
        while True:
            batch = _flat(_drain(self._results, REPORT_INTERVAL))
            if batch and _STOP not in batch and gathers(len(batch), self._downloading(batch)):
                time.sleep(SYNC_GATHER)
                batch += _flat(_drain(self._results, 0))
            stop = _STOP in batch
            batch = [b for b in batch if b is not _STOP]
            if batch:
                try:
                    self._make_durable(batch)
                except OSError as exc:  # never report a rename that may not be durable
                    log.error("sync of the mountpath failed: %s", exc)
                    batch = [(_retry(o), d) for o, d in batch]
                self._synced.put(batch)
            if stop:
                return

    def _downloading(self, batch: list[work.Result]) -> int:
        """(From the sync thread) the claimed rows still downloading: not
        this batch's, nor the stored ones waiting to be recorded."""
        failed = sum(1 for outcome, _ in batch if outcome.state not in _STORED)  # (not counted as stored)
        return len(self._running) - len(self._stored) - failed

    def _make_durable(self, batch: list[work.Result]) -> None:
        make_durable(batch, self.mountpath, self._batch_sync, drop=self._drop_cache)

    def _report(self, conn: sqlite3.Connection, batch: list[work.Result]) -> float | None:
        """Record a batch; the soonest ``next_try`` (wall clock) of the rows
        it gave back for another attempt, if any."""
        if not batch:
            return None
        with self._stored_lock:
            self._stored.difference_update(o.task_id for o, _ in batch)
        ended = claims.report(conn, self.owner, [o for o, _ in batch])
        for job_id in ended:
            log.info("job %s finished", job_id)
        if ended and self.wake_fd >= 0:
            wake.poke(self.wake_fd)  # the supervisor sees it now, not at its next tick
        for outcome, _ in batch:
            running = self._running.pop(outcome.task_id, None)
            if running is not None and running.task.connections:
                self._limited -= 1
            if self._extra:
                self._extra.pop(outcome.task_id, None)
            if outcome.task_id in self._bare:
                self._bare.discard(outcome.task_id)
            elif outcome.state in (ObjectState.DONE, ObjectState.SKIPPED):
                transfer.drop_work(self.mountpath, outcome.task_id)  # recorded: the .meta is no longer needed
        retries = [o.next_try for o, _ in batch if o.state is ObjectState.PENDING and not o.release]
        return min(retries, default=None)

    def _renew(self, conn: sqlite3.Connection) -> None:
        progress = {oid: r.progress for oid, r in self._running.items()}
        for oid in claims.renew(conn, self.owner, self.settings.lease_seconds, progress):
            if oid in self._running:
                self._running[oid].cancel.set()

    def _start(self, conn: sqlite3.Connection, pool: _Pool, task: Task, no_meta: bool = False) -> None:
        """``no_meta``: the work directory has no .meta of the row."""
        running = _Running(task)
        self._running[task.id] = running
        if task.connections:
            self._limited += 1
        headers = self._headers(conn, task.job_id)
        ctx = self._context(running, headers)
        ctx.no_meta = no_meta
        if ctx.throttle is None and not providers.writes_through(task):
            if curl.eligible(task.link):
                self._to_curl(task, ctx)
                return
            if task.link[:5].lower() == "hf://":
                self._submit_routed(task, ctx)
                return
            # a cloud object: its signed GET to the loop too (signed here, off the loop thread)
            signed = signed_get(task.link, _listed(task)) if self.settings.cloud_get == "curl" else None
            if signed is not None:
                self._to_curl(task, ctx, signed)
                return
        if not self._downloaders:
            self._start_downloaders(pool)
        pool.put((running, ctx))

    def _to_curl(self, task: Task, ctx: work.Context, signed: SignedGet | None = None) -> None:
        """To the libcurl loop; a large object counts as the connections of
        its segments until it is recorded (what the claim counted)."""
        if self._threshold and not task.connections and (task.size or 0) >= self._threshold:
            self._extra[task.id] = claims.connections(task.size, self._threshold, curl.SEGMENTS) - 1
        self._curl.submit(task, ctx, signed)

    def _submit_routed(self, task: Task, ctx: work.Context) -> None:
        """An ``hf://`` file: the libcurl loop asks the Hub's resolve URL
        (``sources.hfroute``), without the SDK sources."""
        from dlengine.sources import hfroute

        try:
            route = hfroute.route(task.link, ctx.headers)
        except BaseException as exc:  # noqa: BLE001 - errors are outcomes
            self._put((work.failure(task, exc, ctx), None))
            return
        self._curl.submit(task, ctx, route=route)

    def _curl_done(self, batch: list[tuple[work.Result, bool]]) -> None:
        """From the curl thread: the outcomes of a round of its loop
        (``sidecar``: a .meta may exist), handed on at once."""
        self._bare.update(result[0].task_id for result, sidecar in batch if not sidecar)
        self._hand_on([result for result, _ in batch])

    def _put(self, result: work.Result) -> None:
        """An outcome to make durable and record (from any thread)."""
        self._hand_on([result])

    def _hand_on(self, results: list[work.Result]) -> None:
        """Outcomes to the syncer (from any thread), as one list."""
        stored = [result[0].task_id for result in results if result[0].state in _STORED]
        freed = False
        with self._stored_lock:
            self._ended += len(results)
            if stored:
                self._stored.update(stored)
                self._unfreed += len(stored)
                freed = self._unfreed >= max(1, self._threads // 2)
                if freed:
                    self._unfreed = 0
        self._results.put(results)
        if freed and self._synced is not self._results:
            # connections freed while their outcomes wait for the sync:
            # the ledger thread claims more now, not when the sync is over
            self._synced.put(_FREED)

    def _headers(self, conn: sqlite3.Connection, job_id: str) -> dict[str, str]:
        if job_id not in self._job_headers:
            headers = jobs.request_headers(conn, job_id)
            headers.update(jobsecrets.load(self.settings.secrets_dir, job_id))
            self._job_headers[job_id] = headers
        return self._job_headers[job_id]

    def _download_loop(self, pool: _Pool) -> None:
        process.name_thread("dl-get")
        while (item := pool.get()) is not None:
            try:
                self._download(*item)
            except BaseException:  # run_task never raises; keep the thread alive anyway
                log.exception("download thread")

    def _context(self, running: _Running, headers: dict[str, str]) -> work.Context:
        def progress(done: int, size: int | None) -> None:
            running.progress = (done, size)

        return work.Context(
            workdir=self.mountpath,
            headers=headers,
            timeout=self.settings.default_timeout,
            chunk_size=self.settings.chunk_size,
            fsync=self._file_sync,
            drop_cache=self._drop_cache,
            hold_files=self._drop_cache and self.settings.fsync,  # (the sync thread lets them go)
            max_attempts=self.settings.max_attempts,
            pool_size=self._threads,
            cancel=running.cancel,
            progress=progress,
            throttle=self._throttles.hook(running.task, running.cancel),
            stopping=lambda: running.stopping,
        )

    def _download(self, running: _Running, ctx: work.Context) -> None:
        task = running.task
        if running.cancel.is_set():  # aborted (or the worker stops) while queued
            self._put((work.failure(task, transfer.Aborted(), ctx), None))
            return
        self._put(work.run_task(task, ctx))

    def _shutdown(self, conn: sqlite3.Connection) -> None:
        """Stop downloads, keep their work files, give their rows back
        (after a loop failure, those of the loop's rows stay running: their
        outcomes will not come, the supervisor gives them back)."""
        for running in self._running.values():
            running.stopping = True
            running.cancel.set()
        deadline = time.monotonic() + (FAILED_WAIT if self.failed is not None else 5)
        held, self._held = self._held, []
        self._report(conn, held)
        while self._running and time.monotonic() < deadline:
            self._report(conn, self._collect(timeout=0.1))


def _listed(task: Task) -> ObjectInfo | None:
    """What the listing said of a backend job's object."""
    if task.size is None and task.etag is None and task.version is None:
        return None
    algo, _, digest = (task.checksum or "").partition(":")
    sums = {algo: digest} if algo and digest else {}
    return ObjectInfo(task.name, task.size, task.etag, task.version, checksums=sums)


_STOP: object = object()
_STORED = (ObjectState.DONE, ObjectState.SKIPPED)
_FREED: object = object()  # to the ledger thread: outcomes are waiting for the sync, claim more
_Pool = queue.SimpleQueue[tuple[_Running, work.Context] | None]


def _drain(source: queue.SimpleQueue[Any], timeout: float) -> list[Any]:
    """What ``source`` holds (waiting up to ``timeout`` for the first item),
    at most MAX_BATCH items."""
    batch = []
    try:
        batch.append(source.get(timeout=timeout) if timeout else source.get_nowait())
        while len(batch) < MAX_BATCH:
            batch.append(source.get_nowait())
    except queue.Empty:
        pass
    return batch


def _flat(items: list[Any]) -> list[Any]:
    """Outcomes as the syncer gets them: one at a time, or a list of them
    (a round of the libcurl loop)."""
    if not any(isinstance(item, list) for item in items):
        return items
    flat: list[Any] = []
    for item in items:
        if isinstance(item, list):
            flat += item
        else:
            flat.append(item)
    return flat


def wait_for_ledger(conn: sqlite3.Connection, stop: threading.Event, until: float, look: float = IDLE_LOOK) -> bool:
    """An idle worker's wait until ``until`` (``time.monotonic``), cut
    short when another connection commits to the ledger (``PRAGMA
    data_version`` changes, looked at every ``look`` seconds): a job's rows
    inserted, a listing's next page, a row given back. True if cut short
    that way; False at ``until`` or once ``stop`` is set."""
    try:
        version = db.data_version(conn)
        while not stop.is_set():
            left = until - time.monotonic()
            if left <= 0:
                return False
            stop.wait(min(look, left))
            if db.data_version(conn) != version:
                return True
    except sqlite3.Error:  # (a busy or broken ledger: the next claim says so)
        stop.wait(max(0.0, until - time.monotonic()))
    return False


def gathers(batch: int, downloading: int) -> bool:
    """Whether a sync batch of ``batch`` outcomes waits SYNC_GATHER for
    more: only while enough objects are still downloading for the batch to
    reach a syncfs (more than FEW_FILES; small objects finishing by the
    hundred). A batch that would stay few is fsynced file by file anyway:
    the last objects of a job, a one-object download or a job of four go
    at once instead of 20 ms later."""
    return batch <= FEW_FILES < batch + downloading


def make_durable(batch: list[work.Result], mountpath: Path, batch_sync: bool, drop: bool = False) -> None:
    """The files and renames of a batch, durable: one syncfs(2) of the
    mountpath for all of them, or (per-file mode, ``batch_sync`` off) an
    fsync of each directory whose entries changed (the files were fsynced
    already). A batch of a few files (large ones, or a trickle) has them
    and their directories up to the mountpath fsynced instead of a syncfs,
    which would wait for whatever else anyone wrote on the file system
    meanwhile (and so is every batch where the C library has no syncfs).
    ``drop``: then the pages of the batch's objects leave the
    page cache (unless DLENGINE_KEEP_CACHE): a bulk download recycles a
    few batches' worth of memory instead of growing the cache by every byte
    it writes, which pushes the rest of the machine's cached data out, and
    on a VM whose freed memory goes back to its host costs several times
    the system CPU of writing into recycled pages. Small objects too: the
    open, fadvise and close of a 10 KiB object cost less than writing
    its three pages into fresh memory (bench/RESULTS.md, 2026-12-03
    evening)."""
    installed = [f for o, f in batch if f is not None and o.state is ObjectState.DONE]
    synced = False
    try:
        if not batch_sync:
            durable.fsync_dirs(os.path.dirname(f) for f in installed)
        elif len(installed) > FEW_FILES and durable.has_syncfs():
            durable.syncfs(mountpath)
        elif installed:
            durable.fsync_files(installed)
            durable.fsync_dirs(d for f in installed for d in _up_to(Path(f).parent, mountpath))
        synced = True
    finally:  # (the descriptors the installs held: ``durable.hold``)
        durable.let_go(installed, drop and synced)


def _up_to(directory: Path, top: Path) -> list[Path]:
    """``directory`` and its parents up to ``top`` (whose entries a new
    object's directories may have changed)."""
    chain = [directory]
    while directory != top and directory != directory.parent:
        directory = directory.parent
        chain.append(directory)
    return chain


def _retry(outcome: Outcome) -> Outcome:
    if outcome.state is not ObjectState.DONE:
        return outcome
    return Outcome(outcome.task_id, ObjectState.PENDING, error="fsync failed", next_try=time.time() + 5)


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the supervisor dies, so no orphan keeps
    writing work files that a new supervisor hands to someone else."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def worker_main(
    settings: Settings, mountpath_id: int, mountpath: str, owner: str, parent_pid: int, wake_fd: int = -1
) -> int:
    """Entry point of a worker process (spawned by the supervisor); its
    exit code."""
    _die_with_parent()
    if os.getppid() != parent_pid:
        return 0  # the parent died before we could ask to die with it
    process.keep_freed_memory()
    from dlengine.supervisor.pool import WORKER_LOG_FORMAT

    logging.basicConfig(level=logging.INFO, format=WORKER_LOG_FORMAT)  # (set by the pool's entry already: kept)
    install_log_redaction()
    worker = Worker(settings, mountpath_id, Path(mountpath), owner, wake_fd)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides
    startup.done()  # (a fresh worker's start-up is over: dlengine/startup.py)
    worker.run()
    if worker.failed is not None:
        exc = worker.failed
        log.error(
            "worker %s: its libcurl loop failed (%s: %s); exiting %d, its objects go back to the supervisor",
            owner, type(exc).__name__, exc, LOOP_FAILED,
        )  # fmt: skip
        return LOOP_FAILED
    return 0


def main() -> None:
    """``python -c 'from dlengine.supervisor.worker import main; main()'
    SETTINGS MOUNTPATH_ID MOUNTPATH OWNER PARENT_PID [WAKE_FD]`` (the pool starts it)."""
    import sys

    from dlengine.supervisor.pool import settings_from_arg

    config, mountpath_id, mountpath, owner, parent_pid = sys.argv[1:6]
    wake_fd = int(sys.argv[6]) if len(sys.argv) > 6 else -1
    code = worker_main(settings_from_arg(config), int(mountpath_id), mountpath, owner, int(parent_pid), wake_fd)
    _leave(code)


def _leave(code: int) -> None:
    """End the process without the interpreter's teardown: what matters
    is in the ledger and on disk by now."""
    process.exit_at_once(code)

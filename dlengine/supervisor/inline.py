"""A small job downloaded inside the command that waits for it (issue 17).

``download --wait`` (or ``submit --wait``, ``--progress``) of a few objects
(at most ``inline_objects``, ``DLENGINE_INLINE``) does not start a
supervisor and its worker processes, three interpreters and ~1 s before
the first byte: the command takes the home's lock itself, as a supervisor
would, and runs one ``supervisor.worker.Worker`` per mountpath the job's
rows are placed on (usually one), on threads of its own process. Each is
the worker the supervisor spawns: its ledger thread claims, renews and
reports with the same leases and connection limits, one libcurl loop,
byte limits through the shared token bucket, one syncfs per batch before
"done".

Why the lock: while the command holds it no supervisor can start for the
home, so nobody else recovers, expires or hands out these rows. When the
command dies however it dies (``kill -9``) the kernel drops the lock, and
the next supervisor's recovery gives back the rows it left running (their
work files kept for resume), as after a supervisor's death. When the lock
is taken (a ``run``, ``serve``, or another command running its job) or
another job is busy, the job goes to the supervisor as before.

When the command stops following (Ctrl-C, an error) or a worker gives up,
its rows go back and a background supervisor is started for what is left,
as a supervisor that stops hands over.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from dlengine.config import Settings
from dlengine.ledger.ledger import Ledger
from dlengine.ledger.models import JobRecord
from dlengine.logredact import RedactingFormatter
from dlengine.supervisor.joblog import log_ended
from dlengine.supervisor.lock import HomeLock
from dlengine.supervisor.wake import Wake

if TYPE_CHECKING:  # imported when there is something to download: the data path (libcurl, the transfer)
    from dlengine.supervisor.worker import Worker

log = logging.getLogger("dlengine.inline")


def start(settings: Settings, ledger: Ledger, job_ids: Sequence[str]) -> InlineRun | None:
    """Run these jobs in this process, or None when they must go to a
    supervisor (too many objects left to download, a range still to be
    inserted, the lock taken, another job busy, a remote executor).

    A backend job still to be listed is listed here first, under the lock,
    by the supervisor's own dispatcher (one round: a few pages, cursor and
    skips as there): a small bucket, or a re-run with nothing to do, then
    needs no supervisor at all; a large one is handed over with its first
    pages inserted, and the supervisor lists on from the cursor."""
    if settings.inline_objects <= 0 or settings.remote_executor:
        return None
    records = ledger.jobs_by_id(job_ids)
    listing = [j for j in records if not j.all_dispatched]
    if any(j.type != _BACKEND for j in listing) or not _few(settings, records):
        return None
    lock = HomeLock(settings.lock_path)
    if not lock.acquire():
        return None
    try:
        if not set(ledger.busy_job_ids()) <= set(job_ids):
            lock.release()  # the supervisor serves them
            return None
        if listing:
            records = _list_here(settings, ledger, job_ids)
            # (a job the listing aborted, e.g. a missing SDK, has ended: nothing for a supervisor)
            if any(not (j.all_dispatched or j.ended) for j in records) or not _few(settings, records):
                lock.release()  # a large listing: the supervisor lists on from the cursor
                return None
        places = ledger.placed_mountpaths()
        if not all(_usable(Path(p)) for _, p in places):
            lock.release()  # the supervisor fails them naming the mountpath
            return None
        total = _left(records)
        # as many threads (claimed rows at once) as objects: no idle download threads to start
        settings = dataclasses.replace(settings, threads_per_worker=max(1, min(settings.threads_per_worker, total)))
        return InlineRun(settings, lock, places, job_ids, ledger).start()
    except BaseException:
        lock.release()
        raise


_BACKEND = "backend"  # JobType.BACKEND's value (spec's enum not imported for one string)


def _left(records: Sequence[JobRecord]) -> int:
    """What is left to download (a re-run's job holds its skipped rows too)."""
    return sum(j.pending_cnt + j.running_cnt for j in records)


def _few(settings: Settings, records: Sequence[JobRecord]) -> bool:
    return _left(records) <= settings.inline_objects


def _list_here(settings: Settings, ledger: Ledger, job_ids: Sequence[str]) -> list[JobRecord]:
    """One round of the dispatcher in this process (the lock is held and no
    other job is busy: only these jobs are undispatched); the jobs after it."""
    from dlengine.supervisor.dispatch import Dispatcher

    handler = _log_to_file(settings.log_path)  # its warnings where a supervisor's go, not to stderr
    try:
        Dispatcher(settings, threading.Event()).dispatch_round(ledger)
    finally:
        logging.getLogger("dlengine").removeHandler(handler)
        handler.close()
    return ledger.jobs_by_id(job_ids)


def _usable(path: Path) -> bool:
    return path.is_absolute() and path.is_dir()


class InlineRun:
    """The workers of this process; a context manager: leaving it stops
    them (their rows go back), releases the lock and hands what is left to
    a background supervisor."""

    def __init__(
        self,
        settings: Settings,
        lock: HomeLock,
        places: Sequence[tuple[int, str]],
        job_ids: Sequence[str],
        ledger: Ledger,
    ) -> None:
        """``ledger``: the command's connection (its thread's), for what it
        reads when leaving."""
        self.settings = settings
        self._ledger = ledger
        self.job_ids = list(job_ids)
        self._lock = lock
        self._wake = Wake()  # poked by a worker whose report ended a job
        self._closing = False
        self._handed = threading.Lock()
        self._released = False
        self._handler = _log_to_file(settings.log_path)
        self._workers = _workers(settings, places, self._wake.w)
        self._threads = [
            threading.Thread(target=self._run, args=(w,), name=f"inline-{w.mountpath_id}", daemon=True)
            for w in self._workers
        ]

    def start(self) -> InlineRun:
        for thread in self._threads:
            thread.start()
        return self

    def sleep(self, seconds: float) -> None:
        """Wait between two looks at the job: until a job ends or ``seconds``."""
        self._wake.wait(seconds)

    def __enter__(self) -> InlineRun:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Idempotent: once the followed jobs ended, and on leaving."""
        if self._closing:
            return
        self._closing = True
        self._stop_workers()
        self._hand_over(self._ledger)
        self._wake.close()
        logging.getLogger("dlengine").removeHandler(self._handler)
        self._handler.close()

    def _run(self, worker: Worker) -> None:
        try:
            worker.run()
        except Exception:  # a supervisor takes over
            log.exception("the download in this command failed; a supervisor takes over")
        if not self._closing:  # gave up on its own (its libcurl loop or the ledger failed)
            self._stop_workers(but=worker)
            self._hand_over()

    def _stop_workers(self, but: Worker | None = None) -> None:
        """Every worker stopped and its rows given back: only then may a
        supervisor start (it would hand them out again)."""
        for worker in self._workers:
            worker.stop.set()
        for worker, thread in zip(self._workers, self._threads, strict=True):
            if worker is not but and thread.ident is not None and thread is not threading.current_thread():
                thread.join()

    def _hand_over(self, ledger: Ledger | None = None) -> None:
        """Once: release the lock; jobs still busy (ours after an
        interruption, others submitted meanwhile, which found the lock held)
        get a background supervisor."""
        with self._handed:
            if self._released:
                return
            self._released = True
            self._lock.release()
        try:
            own = ledger or Ledger.open(self.settings.ledger_path)  # (a worker's thread: a connection of its own)
            try:
                log_ended(own, own.jobs_by_id(self.job_ids), set())  # in the log as a supervisor would
                busy = own.busy_job_ids()
            finally:
                if own is not ledger:
                    own.close()
            if busy:
                from dlengine.supervisor.background import start_background

                start_background(self.settings)
        except Exception:  # the next submit or run serves them
            log.exception("could not hand over to a supervisor")


def _workers(settings: Settings, places: Sequence[tuple[int, str]], wake_fd: int) -> list[Worker]:
    """A worker per mountpath with something to download; none (and
    nothing of the data path imported) for a re-run with nothing to do."""
    if not places:
        return []
    from dlengine.supervisor.worker import Worker

    return [Worker(settings, mp_id, Path(path), _owner(mp_id), wake_fd) for mp_id, path in places]


def _owner(mountpath_id: int) -> str:
    """A lease owner of this command (a worker's, with the pid)."""
    return f"{os.uname().nodename}:{mountpath_id}:cli{os.getpid()}-{os.urandom(2).hex()}"


def _log_to_file(path: Path) -> logging.Handler:
    """What the workers log goes where a supervisor's would (the home's
    supervisor.log, opened at the first line), redacted, not to the
    command's stderr."""
    handler = _PrivateLog(path, delay=True)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(name)s %(message)s"))
    logger = logging.getLogger("dlengine")
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    return handler


class _PrivateLog(logging.FileHandler):
    """The log file created 0600, like the ledger (a log names links)."""

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return os.fdopen(fd, "a", encoding="utf-8")

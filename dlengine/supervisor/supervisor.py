"""The supervisor: one per home. Recovers the ledger, keeps one worker pool
per mountpath alive, finishes jobs, and exits when no work is left (``run``)
or lingers for new work (background) or never (``serve``)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from dlengine import startup
from dlengine.config import Settings
from dlengine.errors import ConfigError, ErrorCode, FatalError, LedgerError, SupervisorError, SupervisorRunning
from dlengine.ledger.ledger import Ledger
from dlengine.ledger.models import JobRecord
from dlengine.storage import identity, layout
from dlengine.supervisor import prespawn
from dlengine.supervisor.joblog import log_ended
from dlengine.supervisor.lock import HomeLock
from dlengine.supervisor.retry import StepFailures
from dlengine.supervisor.wake import Wake

if TYPE_CHECKING:  # imported when used: it imports every source (urllib3, the SDKs' modules)
    from dlengine.supervisor import dask_executor
    from dlengine.supervisor.dispatch import Dispatcher  # (and the spec parser): once a job is busy
    from dlengine.supervisor.pool import Death, MountpathPool  # (and subprocess): once a job is busy

log = logging.getLogger("dlengine.supervisor")

TICK = 0.2
EXPIRY_SWEEP = 5.0
PLACED_CHECK = 1.0  # seconds between looks for mountpaths that objects wait on
# seconds a mountpath whose workers kept dying at start stays given up (its
# objects fail at once); then new work there gets new workers
GIVEN_UP_FOR = 60.0


class Supervisor:
    def __init__(self, settings: Settings, linger: float | None = 0.0) -> None:
        """``linger``: seconds to wait for new work once idle; None = forever."""
        self._idle_exit = False  # ended because idle (not stopped, not failed)
        self.settings = settings
        self.linger = linger
        self.stop = threading.Event()
        # poked by a worker whose report ended a job, and by a stop signal:
        # a tick comes at once, not at the end of TICK
        self._wake = prespawn.adopt_wake() or Wake()  # (the spare workers hold its write end)
        self.lock = HomeLock(settings.lock_path)
        self.pools: list[MountpathPool] = []
        self._given_up: dict[int, tuple[str, float]] = {}  # mountpath id -> (reason, until: monotonic)
        self.executor: dask_executor.DaskExecutor | None = None  # --executor dask://
        self.dispatcher: Dispatcher | None = None
        self.seen_jobs: set[str] = set()
        self._busy: set[str] = set()  # jobs busy at the last tick
        self._logged: set[str] = set()  # ended jobs already logged
        self.started = 0.0
        self.stopped_by: signal.Signals | None = None  # the signal that stopped it (install_signal_handlers)
        self._idle_since: float | None = None  # (time.monotonic) since when no job is busy

    def run(self) -> int:
        """Process jobs until done; returns 1 if a job it saw failed objects
        or was aborted, else 0."""
        if not self.lock.acquire():
            raise SupervisorRunning(
                f"a supervisor is already running for {self.settings.home} (pid {self.lock.holder()})"
            )
        try:
            self.started = time.time()
            ledger = Ledger.open(self.settings.ledger_path)
            home = ledger.home_id()
            for mountpath in self.settings.mountpaths:  # never another home's work files
                identity.claim(mountpath, home, self.settings.home)
            self._recover(ledger)
            if self.settings.remote_executor:
                self._start(ledger)
            else:  # local workers once a job is busy: a cron run with nothing to do starts none
                self._register_mountpaths(ledger)
                if ledger.busy_job_ids():
                    self._start(ledger)
            startup.done()  # (the collector as usual from here: startup.py)
            self._loop(ledger)
            self._raise_thread_error()
            return self._exit_code(ledger)
        finally:
            self.stop.set()
            self._stop_executor()
            self._stop_pools()
            self._wake.close()
            self.lock.release()
            if self._idle_exit:
                self._hand_over()

    def _start(self, ledger: Ledger) -> Dispatcher:
        """The workers (or the executor) and the dispatcher."""
        self._start_workers(ledger)
        self._serve_placed(ledger)
        # imported once the workers have their arguments (the spec parser,
        # the listers: ~10 ms), while they make their way to the first claim
        from dlengine.supervisor.dispatch import Dispatcher

        self.dispatcher = Dispatcher(self.settings, self.stop)
        self.dispatcher.start()
        return self.dispatcher

    def _raise_thread_error(self) -> None:
        """A thread that gave up ends the supervisor with its reason (exit 3)."""
        if self.executor is not None and self.executor.error:
            raise FatalError(self.executor.error)
        if self.dispatcher is not None and self.dispatcher.error:
            raise SupervisorError(self.dispatcher.error)

    def _recover(self, ledger: Ledger) -> None:
        """Rows left running by a dead supervisor go back to pending (their
        work files stay for resume); work files of ended rows go."""
        recovered = ledger.give_back()
        if recovered:
            log.info("recovered %d interrupted objects", len(recovered))
        ledger.finish()
        for mountpath in self.settings.mountpaths:
            self._collect_garbage(ledger, mountpath)

    def _served(self) -> set[int]:
        """Ids of the mountpaths whose objects this supervisor claims."""
        if self.executor is not None:
            return set(self.executor.mountpath_ids)
        return {p.mountpath_id for p in self.pools}

    def _serve_placed(self, ledger: Ledger) -> None:
        """Every mountpath that pending objects are placed on is served: one
        submitted with other DLENGINE_MOUNTPATHS (or another working
        directory) gets a pool too, or, if it cannot be used (gone, another
        home's), its objects fail with the reason naming it: never a job
        left waiting in silence (issue 11)."""
        served = self._served()
        for mountpath_id, path in ledger.placed_mountpaths():
            if mountpath_id in served:
                continue
            given_up = self._still_given_up(mountpath_id)
            reason = given_up or self._unusable(ledger, Path(path))
            if reason is None:
                log.info("serving mountpath %s: objects are placed on it", path)
                self._start_pool(mountpath_id, Path(path), self._wanted(ledger))
                continue
            count = ledger.fail_placed(mountpath_id, reason, ErrorCode.WORKER if given_up else ErrorCode.MOUNTPATH)
            log.warning("%d object(s) failed: %s", count, reason)

    def _still_given_up(self, mountpath_id: int) -> str | None:
        """Why this mountpath has no workers (they kept dying at start), or
        None (never given up, or GIVEN_UP_FOR has passed)."""
        reason, until = self._given_up.get(mountpath_id, (None, 0.0))
        if reason is not None and time.monotonic() >= until:
            del self._given_up[mountpath_id]
            return None
        return reason

    def _unusable(self, ledger: Ledger, path: Path) -> str | None:
        """Why the objects placed on ``path`` cannot be downloaded here, or
        None if a pool can serve it."""
        if self.settings.remote_executor:
            return f"mountpath {path} is not one of this supervisor's (DLENGINE_MOUNTPATHS) under a remote executor"
        if not path.is_absolute() or not path.is_dir():
            return f"mountpath {path} does not exist (not mounted?): `dlengine retry ID` once it is back"
        try:
            identity.claim(path, ledger.home_id(), self.settings.home)
        except ConfigError as exc:
            return str(exc)
        return None

    def _collect_garbage(self, ledger: Ledger, mountpath: Path) -> None:
        for row_id in layout.work_file_ids(mountpath):
            if ledger.object_state(row_id) not in ("pending", "running"):
                layout.remove_work_files(mountpath, row_id)

    def _start_workers(self, ledger: Ledger) -> None:
        """Local worker pools, or the Dask executor."""
        if not self.settings.remote_executor:
            self._start_pools(ledger)
            return
        from dlengine.supervisor import dask_executor

        client = dask_executor.connect(self.settings.executor)
        ids = ledger.mountpath_ids([str(p) for p in self.settings.mountpaths])
        self.executor = dask_executor.DaskExecutor(self.settings, client, list(ids.values()), self.stop)
        self.executor.start()
        log.info("downloads run on the Dask cluster at %s", self.settings.executor)

    def _stop_executor(self) -> None:
        if self.executor is None:
            return
        if self.executor.is_alive():
            self.executor.join(timeout=15)
        self.executor.client.close()

    def _owners(self) -> list[str]:
        """Lease owners known to be alive."""
        owners = [o for p in self.pools for o in p.owners()]
        return owners + ([self.executor.owner] if self.executor is not None else [])

    def _register_mountpaths(self, ledger: Ledger) -> dict[str, int]:
        ids = ledger.mountpath_ids([str(p) for p in self.settings.mountpaths])
        for path in self.settings.mountpaths:
            path.mkdir(parents=True, exist_ok=True)
        return ids

    def _start_pools(self, ledger: Ledger) -> None:
        ids = self._register_mountpaths(ledger)
        wanted = self._wanted(ledger)
        for path in self.settings.mountpaths:
            self._start_pool(ids[str(path)], path, wanted)

    def _start_pool(self, mountpath_id: int, path: Path, wanted: dict[int, int] | None) -> None:
        """A pool of as many workers as ``wanted`` says (None: its size)."""
        from dlengine.supervisor.pool import MountpathPool

        size = self.settings.workers_for_each_mountpath()
        count = size if wanted is None else wanted.get(mountpath_id, 0)
        pool = MountpathPool(self.settings, mountpath_id, path, size, wake_fd=self._wake.w, wanted=count)
        pool.fill()
        self.pools.append(pool)

    def _wanted(self, ledger: Ledger) -> dict[int, int] | None:
        """Workers each mountpath's queued work can use (``sizing``)."""
        from dlengine.supervisor import sizing  # (imported once pools start, with them)

        mountpaths = max(len(self.settings.mountpaths), len(self.pools))
        return sizing.wanted(self.settings, ledger.queued(sizing.limit(self.settings, mountpaths)), mountpaths)

    def _grow_pools(self, ledger: Ledger) -> None:
        """Pools not full yet grow to what their queued work can use now
        (a larger job came to a supervisor that started small)."""
        growing = [pool for pool in self.pools if not pool.full]
        if not growing:
            return
        wanted = self._wanted(ledger)
        for pool in growing:
            pool.want(pool.size if wanted is None else wanted.get(pool.mountpath_id, 0))

    def _loop(self, ledger: Ledger) -> None:
        """Ticks until idle for ``linger`` or stopped; a tick that keeps
        failing (the ledger's disk is full) ends the supervisor."""
        self._idle_since = None
        self._next_sweep = time.monotonic() + EXPIRY_SWEEP
        self._next_placed = time.monotonic() + PLACED_CHECK
        failures = StepFailures("the supervisor")
        while not self.stop.is_set():
            # a tick first: a run with nothing to do ends now, not after one TICK
            if failures.attempt(lambda: self._tick(ledger), self.stop):
                self._idle_exit = True
                return
            self._wake.wait(self._pause(time.monotonic()))

    def _pause(self, now: float) -> float:
        """Seconds until the next tick: TICK, or less when the linger ends
        sooner (its idle workers polled the ledger up to a TICK more)."""
        if self._idle_since is None or self.linger is None:
            return TICK
        return max(0.0, min(TICK, self._idle_since + self.linger - now))

    def _hand_over(self) -> None:
        """A job submitted while this supervisor was stopping found the lock
        still held and started none: once the lock is released, look again
        and start a background supervisor for it (a second one started by
        its submitter meanwhile just exits: the lock decides)."""
        try:
            ledger = Ledger.open(self.settings.ledger_path)
            try:
                busy = ledger.busy_job_ids()
            finally:
                ledger.close()
            if busy:
                from dlengine.supervisor.background import start_background  # (and subprocess)

                log.info("jobs came in while stopping: starting a supervisor for them")
                start_background(self.settings)
        except Exception:  # the next submit or run serves them anyway
            log.exception("could not hand over to a new supervisor")

    def _tick(self, ledger: Ledger) -> bool:
        """One round of care; True when idle long enough to exit."""
        dispatcher = self.dispatcher
        if dispatcher is None:  # not started: nothing was busy so far
            if not ledger.busy_job_ids():
                self._idle_since = self._idle_since or time.monotonic()
                return self.linger is not None and time.monotonic() - self._idle_since >= self.linger
            dispatcher = self._start(ledger)
        if not dispatcher.is_alive() and not self.stop.is_set():
            raise SupervisorError(dispatcher.error or "the dispatcher thread ended")
        self._tend_pools(ledger)
        ledger.finish()
        if time.monotonic() > self._next_sweep:
            ledger.give_back_expired(self._owners())
            self._next_sweep = time.monotonic() + EXPIRY_SWEEP
        if time.monotonic() > self._next_placed:
            self._serve_placed(ledger)
            ledger.finish()
            self._next_placed = time.monotonic() + PLACED_CHECK
        if self._active_jobs(ledger):
            self._idle_since = None
            return False
        self._idle_since = self._idle_since or time.monotonic()
        return self.linger is not None and time.monotonic() - self._idle_since >= self.linger

    def _active_jobs(self, ledger: Ledger) -> list[str]:
        ids = ledger.busy_job_ids()
        ended = self._busy - set(ids)
        self._busy = set(ids)
        self.seen_jobs.update(ids)
        if ended:
            self._log_ended(ledger, ledger.jobs_by_id(ended))
        return ids

    def _log_ended(self, ledger: Ledger, ended: list[JobRecord]) -> None:
        log_ended(ledger, ended, self._logged)

    def _tend_pools(self, ledger: Ledger) -> None:
        """Replace dead workers (after a back-off if they died at start);
        their rows go back to pending at once. A pool whose workers keep
        dying at start is given up; one that may grow, grows first."""
        self._grow_pools(ledger)
        for pool in list(self.pools):
            deaths = pool.reap()
            if deaths:
                log.warning(
                    "worker(s) %s died (%s); recovering their objects",
                    ", ".join(d.owner for d in deaths), ", ".join(d.exit for d in deaths),
                )  # fmt: skip
                recovered = self._recover_dead(ledger, pool, deaths)
                pool.count(deaths, mid_work=recovered)
            if pool.gave_up:
                self._give_up(ledger, pool)
            else:
                pool.fill()

    def _recover_dead(self, ledger: Ledger, pool: MountpathPool, deaths: list[Death]) -> bool:
        """The rows of workers that died by themselves: each counts a death
        of its object (claimed alone from now on, so the one that kills its
        worker is found and the others are not interrupted with it again),
        and an object whose worker died with it alone DLENGINE_ATTEMPTS
        times fails, saying how. Not while stopping: a worker that ends
        with us did not die of its objects. True if they held rows."""
        died = {} if self.stop.is_set() else {d.owner: d.how() for d in deaths}
        back, failed = ledger.give_back_dead(died, self.settings.max_attempts)
        for row_id in failed:
            layout.remove_work_files(pool.mountpath, row_id)
        if failed:
            log.error(
                "%d object(s) failed: their worker died with each alone, its death %d (DLENGINE_ATTEMPTS) or more (%s)",
                len(failed), self.settings.max_attempts, ", ".join(d.exit for d in deaths),
            )  # fmt: skip
        others = ledger.give_back(keep_owners=self._owners())  # (not counted: of no worker seen dying)
        return bool(back or failed or others)

    def _give_up(self, ledger: Ledger, pool: MountpathPool) -> None:
        """No more workers for ``pool``'s mountpath (for GIVEN_UP_FOR): its
        objects fail with the reason, as those of an unusable mountpath."""
        reason = pool.failure()
        assert pool.last_early is not None
        log.error("%s; its last lines on stderr:\n%s", reason, "\n".join(pool.last_early.tail))
        self.pools.remove(pool)
        pool.terminate()
        pool.join(timeout=10)
        ledger.give_back(keep_owners=self._owners())
        self._given_up[pool.mountpath_id] = (reason, time.monotonic() + GIVEN_UP_FOR)
        count = ledger.fail_placed(pool.mountpath_id, reason, ErrorCode.WORKER)
        log.warning("%d object(s) failed: no workers for mountpath %s", count, pool.mountpath)
        self._collect_garbage(ledger, pool.mountpath)

    def _stop_pools(self) -> None:
        for pool in self.pools:
            pool.terminate()
        for pool in self.pools:
            pool.join(timeout=10)
        if self.pools:
            try:
                ledger = Ledger.open(self.settings.ledger_path)
                ledger.give_back()
                for pool in self.pools:
                    self._collect_garbage(ledger, pool.mountpath)
                ledger.close()
            except LedgerError as exc:  # the next supervisor recovers them
                log.error("cannot give back the running objects: %s", exc)
        self.pools.clear()

    def _exit_code(self, ledger: Ledger) -> int:
        # a job can start and end between two ticks: count (and log) what ended meanwhile too
        ended = {j.id for j in ledger.ended_since(self.started)}
        jobs = ledger.jobs_by_id(self.seen_jobs | ended)
        self._log_ended(ledger, jobs)
        return 1 if any(j.unfinished for j in jobs) else 0

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda number, _: self._stop_now(signal.Signals(number)))

    def _stop_now(self, by: signal.Signals | None = None) -> None:
        self.stopped_by = self.stopped_by or by
        self.stop.set()
        self._wake.poke()

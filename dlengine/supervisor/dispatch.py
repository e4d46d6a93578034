"""The dispatcher: inserts the objects of range (and backend) jobs into the
ledger, a page per transaction, after submission.

Submitting a million-object template then costs one row, and the objects
appear while workers already download the first ones. The cursor (where the
next page starts) is written in the same transaction as the page, so a crash
never loses or repeats a page.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from typing import Any

from dlengine.config import Settings
from dlengine.errors import DlengineError, LedgerError, TransientError
from dlengine.ledger import jobs
from dlengine.ledger.ledger import Ledger
from dlengine.ledger.models import JobRecord
from dlengine.providers import parse_provider
from dlengine.spec import JobType, load_spec, range_pairs
from dlengine.spec.model import BucketRef, JobSpec
from dlengine.storage.mountpaths import bucket_placer
from dlengine.supervisor import backend
from dlengine.supervisor.retry import StepFailures

log = logging.getLogger("dlengine.dispatch")

PAGES_PER_TURN = 4  # then the next job gets a turn
LIST_RETRIES = 5  # transient listing errors in a row before a job is aborted

Page = Sequence[Any]  # (name, link) of range jobs; NewObject of backend jobs
PageSource = Callable[[JobSpec, JobRecord, Ledger], Iterator[tuple[Page, str]]]


def range_pages(spec: JobSpec, job: JobRecord, ledger: Ledger) -> Iterator[tuple[Page, str]]:
    """Pages of a range job from the job's cursor (a position); each with
    the cursor after it."""
    position = int(job.cursor or 0)
    objects = islice(range_pairs(spec), position, None)
    while page := list(islice(objects, jobs.PAGE_SIZE)):
        position += len(page)
        yield page, str(position)


PAGE_SOURCES: dict[JobType, PageSource] = {JobType.RANGE: range_pages, JobType.BACKEND: backend.backend_pages}
# after the last page, until it returns False: one step of finishing work
FINISH_STEPS: dict[str, Callable[[Ledger, JobRecord], bool]] = {
    JobType.BACKEND.value: backend.sync_step,
}


class Dispatcher(threading.Thread):
    """Fills undispatched jobs, oldest first, a few pages at a time each."""

    def __init__(self, settings: Settings, stop: threading.Event) -> None:
        super().__init__(name="dispatcher", daemon=True)
        self.settings = settings
        self.stop = stop
        self._open: dict[int, Iterator[tuple[Page, str]]] = {}
        self._backoff: dict[int, tuple[int, float]] = {}  # seq -> (failures, not before)
        self.error: str | None = None  # why it stopped, if it did

    def run(self) -> None:
        """Rounds until stopped; a round that keeps failing (e.g. the
        ledger's disk is full) stops the supervisor with the reason."""
        try:
            ledger = Ledger.open(self.settings.ledger_path)
            try:
                self._rounds(ledger)
            finally:
                ledger.close()
        except Exception as exc:  # noqa: BLE001 - the supervisor reports it and exits
            log.error("the dispatcher stopped: %s", exc)
            self.error = str(exc)
            self.stop.set()

    def _rounds(self, ledger: Ledger) -> None:
        failures = StepFailures("the dispatcher")
        while not self.stop.is_set():
            busy = failures.attempt(lambda: self.dispatch_round(ledger), self.stop)
            if busy is False:  # None: failed, and the backoff was waited already
                self.stop.wait(0.2)

    def dispatch_round(self, ledger: Ledger) -> bool:
        """One turn over every undispatched job; True if anything was done."""
        undispatched = ledger.undispatched()
        ready = [j for j in undispatched if self._backoff.get(j.seq, (0, 0.0))[1] <= time.monotonic()]
        for job in ready:
            self._turn(ledger, job)
        self._open = {seq: it for seq, it in self._open.items() if seq in {j.seq for j in undispatched}}
        return bool(ready)

    def _turn(self, ledger: Ledger, job: JobRecord) -> None:
        try:
            pages = self._pages(job, ledger)
            for _ in range(PAGES_PER_TURN):
                page, cursor = next(pages, ([], ""))
                if not self._insert(ledger, job, page, cursor):
                    self._open.pop(job.seq, None)
                    return
                self._backoff.pop(job.seq, None)
        except LedgerError:
            self._open.pop(job.seq, None)
            raise  # not the job's fault: the round is retried, then the supervisor stops
        except TransientError as exc:
            self._open.pop(job.seq, None)  # list again from the cursor, later
            if self._retry_later(job.seq):
                log.warning("job %s: listing failed, will retry: %s", job.id, exc)
                return
            log.error("job %s: cannot list its objects: %s", job.id, exc)
            ledger.abort(job.id, reason=f"cannot list objects: {exc}")
        except DlengineError as exc:
            log.error("job %s: cannot list its objects: %s", job.id, exc)
            self._open.pop(job.seq, None)
            ledger.abort(job.id, reason=f"cannot list objects: {exc}")

    def _retry_later(self, seq: int) -> bool:
        failures = self._backoff.get(seq, (0, 0.0))[0] + 1
        self._backoff[seq] = (failures, time.monotonic() + min(30.0, 0.5 * 2**failures))
        return failures < LIST_RETRIES

    def _pages(self, job: JobRecord, ledger: Ledger) -> Iterator[tuple[Page, str]]:
        if job.seq not in self._open:
            spec = load_spec(job.spec)
            self._open[job.seq] = PAGE_SOURCES[spec.type](spec, job, ledger)
        return self._open[job.seq]

    def _insert(self, ledger: Ledger, job: JobRecord, page: Page, cursor: str) -> bool:
        """Insert one page (or finish dispatching when there is none);
        False when the job needs no more turns."""
        if not page:
            return ledger.end_dispatch(job, lambda led: FINISH_STEPS.get(job.type, _nothing)(led, job))
        bucket = BucketRef(name=job.bucket, provider=parse_provider(job.provider), namespace=job.namespace)
        place = bucket_placer([str(p) for p in self.settings.mountpaths], job.provider, job.bucket, bucket.uri())

        def insert(led: Ledger) -> None:
            if job.type == JobType.BACKEND.value:
                backend.insert_page(led, job, page, place)
            else:
                led.insert_objects(job.seq, iter(page), place)

        return ledger.dispatch_page(job, cursor, insert)


def _nothing(ledger: Ledger, job: JobRecord) -> bool:
    return False

"""The dispatcher: inserts the objects of range (and backend) jobs into the
ledger, a page per transaction, after submission.

Submitting a million-object template then costs one row, and the objects
appear while workers already download the first ones. The cursor (where the
next page starts) is written in the same transaction as the page, so a crash
never loses or repeats a page.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from typing import Any

from dlengine.config import Settings
from dlengine.errors import DlengineError, LedgerError, TransientError
from dlengine.ledger import db, jobs
from dlengine.ledger.states import ACTIVE_JOB_STATES
from dlengine.spec import JobType, iter_objects, load_spec
from dlengine.spec.model import BucketRef, JobSpec
from dlengine.storage.mountpaths import placer
from dlengine.supervisor import backend
from dlengine.supervisor.retry import StepFailures

log = logging.getLogger("dlengine.dispatch")

PAGES_PER_TURN = 4  # then the next job gets a turn
LIST_RETRIES = 5  # transient listing errors in a row before a job is aborted

Page = Sequence[Any]  # (name, link) of range jobs; NewObject of backend jobs
PageSource = Callable[[JobSpec, str | None], Iterator[tuple[Page, str]]]


def range_pages(spec: JobSpec, cursor: str | None) -> Iterator[tuple[Page, str]]:
    """Pages of a range job from position ``cursor``; each with the cursor
    after it."""
    position = int(cursor or 0)
    objects = islice(iter_objects(spec), position, None)
    while page := [(o.name, o.link) for o in islice(objects, jobs.PAGE_SIZE)]:
        position += len(page)
        yield page, str(position)


PAGE_SOURCES: dict[JobType, PageSource] = {JobType.RANGE: range_pages, JobType.BACKEND: backend.backend_pages}
# after the last page, until it returns False: one step of finishing work
FINISH_STEPS: dict[str, Callable[[sqlite3.Connection, sqlite3.Row, Settings], bool]] = {
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
            conn = db.connect(self.settings.ledger_path)
            try:
                self._rounds(conn)
            finally:
                conn.close()
        except Exception as exc:  # noqa: BLE001 - the supervisor reports it and exits
            log.error("the dispatcher stopped: %s", exc)
            self.error = str(exc)
            self.stop.set()

    def _rounds(self, conn: sqlite3.Connection) -> None:
        failures = StepFailures("the dispatcher")
        while not self.stop.is_set():
            try:
                busy = self.dispatch_round(conn)
                failures.succeeded()
            except Exception as exc:  # noqa: BLE001 - retried, then the supervisor stops
                delay = failures.failed(exc)
                log.warning("dispatching failed, will retry in %.1f s: %s", delay, exc)
                self.stop.wait(delay)
                continue
            if not busy:
                self.stop.wait(0.2)

    def dispatch_round(self, conn: sqlite3.Connection) -> bool:
        """One turn over every undispatched job; True if anything was done."""
        sql = f"SELECT * FROM jobs WHERE all_dispatched = 0 AND state IN {ACTIVE_JOB_STATES!r} ORDER BY seq"
        rows = conn.execute(sql).fetchall()
        ready = [r for r in rows if self._backoff.get(r["seq"], (0, 0.0))[1] <= time.monotonic()]
        for row in ready:
            self._turn(conn, row)
        self._open = {seq: it for seq, it in self._open.items() if seq in {r["seq"] for r in rows}}
        return bool(ready)

    def _turn(self, conn: sqlite3.Connection, row: sqlite3.Row) -> None:
        try:
            pages = self._pages(row)
            for _ in range(PAGES_PER_TURN):
                page, cursor = next(pages, ([], ""))
                if not self._insert(conn, row, page, cursor):
                    self._open.pop(row["seq"], None)
                    return
                self._backoff.pop(row["seq"], None)
        except LedgerError:
            self._open.pop(row["seq"], None)
            raise  # not the job's fault: the round is retried, then the supervisor stops
        except TransientError as exc:
            self._open.pop(row["seq"], None)  # list again from the cursor, later
            if self._retry_later(row["seq"]):
                log.warning("job %s: listing failed, will retry: %s", row["id"], exc)
                return
            log.error("job %s: cannot list its objects: %s", row["id"], exc)
            jobs.abort_job(conn, row["id"], reason=f"cannot list objects: {exc}")
        except DlengineError as exc:
            log.error("job %s: cannot list its objects: %s", row["id"], exc)
            self._open.pop(row["seq"], None)
            jobs.abort_job(conn, row["id"], reason=f"cannot list objects: {exc}")

    def _retry_later(self, seq: int) -> bool:
        failures = self._backoff.get(seq, (0, 0.0))[0] + 1
        self._backoff[seq] = (failures, time.monotonic() + min(30.0, 0.5 * 2**failures))
        return failures < LIST_RETRIES

    def _pages(self, row: sqlite3.Row) -> Iterator[tuple[Page, str]]:
        if row["seq"] not in self._open:
            spec = load_spec(row["spec"])
            self._open[row["seq"]] = PAGE_SOURCES[spec.type](spec, row["cursor"])
        return self._open[row["seq"]]

    def _insert(self, conn: sqlite3.Connection, row: sqlite3.Row, page: Page, cursor: str) -> bool:
        """Insert one page (or mark the job dispatched when there is none);
        False when the job needs no more turns."""
        bucket = BucketRef(name=row["bucket"], provider=row["provider"], namespace=row["namespace"])
        place = placer([str(p) for p in self.settings.mountpaths], bucket.uri())
        with db.write(conn):
            current = conn.execute("SELECT state, cursor FROM jobs WHERE seq = ?", (row["seq"],)).fetchone()
            if current is None or current["state"] not in ACTIVE_JOB_STATES:
                return False  # aborted or removed meanwhile
            if not page:
                if FINISH_STEPS.get(row["type"], _nothing)(conn, row, self.settings):
                    return True  # more finishing work on the next turn
                conn.execute("UPDATE jobs SET all_dispatched = 1 WHERE seq = ?", (row["seq"],))
                jobs.finish_jobs(conn, [row["seq"]])
                return False
            if row["type"] == JobType.BACKEND.value:
                backend.insert_page(conn, row, page, place)
            else:
                jobs.insert_objects(conn, row["seq"], iter(page), place)
            conn.execute("UPDATE jobs SET cursor = ? WHERE seq = ?", (cursor, row["seq"]))
        return True


def _nothing(conn: sqlite3.Connection, row: sqlite3.Row, settings: Settings) -> bool:
    return False

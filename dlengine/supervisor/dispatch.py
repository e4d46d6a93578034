"""The dispatcher: inserts the objects of range (and backend) jobs into the
ledger, a page per transaction, after submission.

Submitting a million-object template then costs one row, and the objects
appear while workers already download the first ones. The cursor (where the
next page starts) is written in the same transaction as the page, so a crash
never loses or repeats a page.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from itertools import islice

from dlengine.config import Settings
from dlengine.errors import DlengineError
from dlengine.ledger import db, jobs
from dlengine.ledger.states import ACTIVE_JOB_STATES
from dlengine.spec import JobType, iter_objects, parse_job
from dlengine.spec.model import BucketRef, JobSpec
from dlengine.storage.mountpaths import placer

log = logging.getLogger("dlengine.dispatch")

PAGES_PER_TURN = 4  # then the next job gets a turn

Page = list[tuple[str, str]]  # (name, link)
PageSource = Callable[[JobSpec, str | None], Iterator[tuple[Page, str]]]


def range_pages(spec: JobSpec, cursor: str | None) -> Iterator[tuple[Page, str]]:
    """Pages of a range job from position ``cursor``; each with the cursor
    after it."""
    position = int(cursor or 0)
    objects = islice(iter_objects(spec), position, None)
    while page := [(o.name, o.link) for o in islice(objects, jobs.PAGE_SIZE)]:
        position += len(page)
        yield page, str(position)


PAGE_SOURCES: dict[JobType, PageSource] = {JobType.RANGE: range_pages}


class Dispatcher(threading.Thread):
    """Fills undispatched jobs, oldest first, a few pages at a time each."""

    def __init__(self, settings: Settings, stop: threading.Event) -> None:
        super().__init__(name="dispatcher", daemon=True)
        self.settings = settings
        self.stop = stop
        self._open: dict[int, Iterator[tuple[Page, str]]] = {}

    def run(self) -> None:
        conn = db.connect(self.settings.ledger_path)
        try:
            while not self.stop.is_set():
                if not self.dispatch_round(conn):
                    self.stop.wait(0.2)
        finally:
            conn.close()

    def dispatch_round(self, conn: sqlite3.Connection) -> bool:
        """One turn over every undispatched job; True if anything was done."""
        sql = f"SELECT * FROM jobs WHERE all_dispatched = 0 AND state IN {ACTIVE_JOB_STATES!r} ORDER BY seq"
        rows = conn.execute(sql).fetchall()
        for row in rows:
            self._turn(conn, row)
        self._open = {seq: it for seq, it in self._open.items() if seq in {r["seq"] for r in rows}}
        return bool(rows)

    def _turn(self, conn: sqlite3.Connection, row: sqlite3.Row) -> None:
        try:
            pages = self._pages(row)
            for _ in range(PAGES_PER_TURN):
                page, cursor = next(pages, ([], ""))
                if not self._insert(conn, row, page, cursor):
                    self._open.pop(row["seq"], None)
                    return
        except DlengineError as exc:
            log.error("job %s: cannot list its objects: %s", row["id"], exc)
            self._open.pop(row["seq"], None)
            jobs.abort_job(conn, row["id"], reason=f"cannot list objects: {exc}")

    def _pages(self, row: sqlite3.Row) -> Iterator[tuple[Page, str]]:
        if row["seq"] not in self._open:
            spec = parse_job(json.loads(row["spec"]))
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
                conn.execute("UPDATE jobs SET all_dispatched = 1 WHERE seq = ?", (row["seq"],))
                jobs.finish_jobs(conn, [row["seq"]])
                return False
            jobs.insert_objects(conn, row["seq"], iter(page), place)
            conn.execute("UPDATE jobs SET cursor = ? WHERE seq = ?", (cursor, row["seq"]))
        return True

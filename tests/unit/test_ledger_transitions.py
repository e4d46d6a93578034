"""Every transition of the ledger facade keeps each job's counters equal to
its rows counted with GROUP BY: random sequences of submit, dispatch,
claim, report (every outcome), renew, give back, expire, abort, retry,
remove and finish, checked after every step. In process, no server."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from dlengine.errors import ErrorCode, StateError
from dlengine.ledger import jobs
from dlengine.ledger.ledger import Ledger
from dlengine.ledger.models import CatalogEntry, JobRecord, NewJob, NewObject, Outcome, Task
from dlengine.ledger.states import ObjectState
from tests.ledger_checks import check_counters

MOUNTPATHS = ("/mp0", "/mp1")
OWNERS = ("w1", "w2", "w3")


def _place(name: str) -> str:
    return MOUNTPATHS[hash(name) % 2]


class Driver:
    """Random transitions over one ledger, remembering what is claimed."""

    def __init__(self, ledger: Ledger, rng: random.Random) -> None:
        self.ledger = ledger
        self.rng = rng
        self.mps = ledger.mountpath_ids(MOUNTPATHS)
        self.claimed: dict[int, tuple[str, Task]] = {}
        self.jobs = 0

    def step(self) -> None:
        actions = [
            self.submit, self.dispatch, self.claim, self.claim, self.report, self.report, self.renew,
            self.give_back, self.expire, self.abort, self.retry, self.remove, self.finish, self.sync_delete,
            self.fail_placed, self.die,
        ]  # fmt: skip
        self.rng.choice(actions)()

    def _some_job(self) -> JobRecord | None:
        found = self.ledger.jobs()
        return self.rng.choice(found) if found else None

    def submit(self) -> None:
        self.jobs += 1
        kind = self.rng.choice(["multi", "range", "backend"])
        job = NewJob(jobs.new_job_id(), kind, f"j{self.jobs}", "ais", "", f"b{self.jobs % 3}", "{}")
        names = [f"o{self.jobs}-{i}" for i in range(self.rng.randint(0, 12))]
        if kind == "multi":
            self.ledger.create_job(job, ((n, f"http://h/{n}") for n in names), _place)
        else:
            self.ledger.create_job(job, iter(()), _place, dispatched=False, total=len(names) + 5)

    def dispatch(self) -> None:
        pending = self.ledger.undispatched()
        if not pending:
            return
        job = self.rng.choice(pending)
        base = f"d{job.seq}-{job.scheduled_cnt}"
        if self.rng.random() < 0.2:
            self.ledger.end_dispatch(job, lambda _led: False)
            return
        if job.type == "range":
            page = [(f"{base}-{i}", f"http://h/{base}-{i}") for i in range(self.rng.randint(1, 6))]
            self.ledger.dispatch_page(job, base, lambda led: led.insert_objects(job.seq, iter(page), _place) and None)
            return
        states = [ObjectState.PENDING, ObjectState.SKIPPED, ObjectState.FAILED]
        listed = [
            NewObject(f"{base}-{i}", f"s3://x/{base}-{i}", size=self.rng.randint(0, 100), state=self.rng.choice(states))
            for i in range(self.rng.randint(1, 6))
        ]
        self.ledger.dispatch_page(job, base, lambda led: led.insert_listed(job.seq, listed, _place))

    def claim(self) -> None:
        owner = self.rng.choice(OWNERS)
        lease = self.rng.choice([-1.0, 30.0])  # some leases are already expired
        for task in self.ledger.claim(self.rng.choice(list(self.mps.values())), owner, self.rng.randint(1, 5), lease):
            self.claimed[task.id] = (owner, task)

    def report(self) -> None:
        if not self.claimed:
            return
        picked = self.rng.sample(sorted(self.claimed), self.rng.randint(1, len(self.claimed)))
        by_owner: dict[str, list[Outcome]] = {}
        for task_id in picked:
            owner, _task = self.claimed.pop(task_id)
            by_owner.setdefault(owner, []).append(self._outcome(task_id))
        for owner, outcomes in by_owner.items():
            self.ledger.report(owner, outcomes)

    def _outcome(self, task_id: int) -> Outcome:
        kind = self.rng.choice(["done", "skipped", "failed", "retry", "release", "fatal", "aborted"])
        size = self.rng.randint(0, 1000)
        if kind in ("done", "skipped"):
            return Outcome(task_id, ObjectState(kind), size=size, etag="e", mountpath="/mp0")
        if kind == "retry":
            return Outcome(task_id, ObjectState.PENDING, error="reset")
        if kind == "release":
            return Outcome(task_id, ObjectState.PENDING, release=True)
        if kind == "aborted":
            return Outcome(task_id, ObjectState.ABORTED, error="aborted")
        return Outcome(task_id, ObjectState.FAILED, error="x", fatal=kind == "fatal")

    def renew(self) -> None:
        owner = self.rng.choice(OWNERS)
        mine = {tid: (self.rng.randint(0, 50), self.rng.choice([None, 50])) for tid, (o, _) in self.claimed.items()}
        self.ledger.renew(owner, 30.0, {t: p for t, p in mine.items() if self.claimed[t][0] == owner})

    def give_back(self) -> None:
        keep = self.rng.sample(OWNERS, self.rng.randint(0, 2))
        self.ledger.give_back(keep)
        self.claimed = {t: (o, task) for t, (o, task) in self.claimed.items() if o in keep}

    def die(self) -> None:
        """Workers die with their rows: a death each, or failed at the limit."""
        dead = self.rng.sample(OWNERS, self.rng.randint(1, 2))
        self.ledger.give_back_dead({o: "killed by SIGKILL" for o in dead}, self.rng.randint(1, 3))
        self.claimed = {t: (o, task) for t, (o, task) in self.claimed.items() if o not in dead}

    def expire(self) -> None:
        # rows whose lease expired, of owners not alive, go back; the
        # others stay claimed (reports of given-back rows are ignored anyway)
        alive = self.rng.sample(OWNERS, self.rng.randint(0, 3))
        back = set(self.ledger.give_back_expired(alive))
        self.claimed = {t: c for t, c in self.claimed.items() if t not in back}

    def abort(self) -> None:
        job = self._some_job()
        if job is not None:
            self.ledger.abort(job.id, reason="by the test")

    def retry(self) -> None:
        job = self._some_job()
        if job is not None:
            try:
                self.ledger.retry(job.id)
            except StateError:
                pass  # still running

    def remove(self) -> None:
        job = self._some_job()
        if job is not None:
            try:
                self.ledger.remove(job.id)
            except StateError:
                pass

    def finish(self) -> None:
        self.ledger.finish()

    def fail_placed(self) -> None:
        if self.rng.random() < 0.3:  # rarely: it fails every pending row of a mountpath
            self.ledger.fail_placed(self.rng.choice(list(self.mps.values())), "gone", ErrorCode.NOT_FOUND)

    def sync_delete(self) -> None:
        job = self._some_job()
        if job is None or job.type != "backend" or (not job.all_dispatched and self.rng.random() < 0.5):
            return
        gone = [
            CatalogEntry(job.provider, job.namespace, job.bucket, f"gone-{job.seq}-{job.scheduled_cnt}", 7, "/mp0",
                         "s3://x/gone", None, None, None, None, 0.0, None)
        ]  # fmt: skip
        with self.ledger.transaction() as led:
            led.record_deleted(job, gone)


@pytest.mark.parametrize("seed", range(12))
def test_every_transition_keeps_counters_equal_to_rows(tmp_path: Path, seed: int) -> None:
    ledger = Ledger.open(tmp_path / "ledger.db")
    driver = Driver(ledger, random.Random(seed))
    for _ in range(150):
        driver.step()
        check_counters(ledger)
    assert driver.jobs > 0


def test_check_counters_can_fail(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "ledger.db")
    Driver(ledger, random.Random(0)).submit()
    ledger.connection.execute("UPDATE jobs SET pending_cnt = pending_cnt + 1")
    with pytest.raises(AssertionError):
        check_counters(ledger)

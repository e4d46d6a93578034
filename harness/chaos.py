"""Chaos loop: ``kill -9`` a real ``dlengine run`` at random moments, again
and again, and prove that nothing is lost, corrupted, duplicated or
downloaded twice.

Each generation is one job of a few large objects (throttled by the test
server so kills land mid-body) and many small ones (so kills land while
completions are committed). The loop starts ``dlengine run``, kills its
whole process group after a random delay, checks the invariants that must
hold at every instant, and starts it again; when a job has finished it is
verified and the next generation is submitted. At the end ``run`` goes to
completion and everything is verified once more.

At every kill:
  * the job counters equal the rows counted by state;
  * every file visible in a bucket is complete and byte-identical to its
    source (a partial object is never visible).
For every finished job:
  * every object is done, stored once (catalog, ``ls``, rows) and identical;
  * no row counts a worker's death (``objects.deaths``: the workers died
    with their supervisor, not of an object);
  * per object, the bytes the server sent beyond its size are at most one
    chunk per interrupted attempt (``DLENGINE_CHUNK``). An answer in flight
    at a kill counts the bytes sent until the SIGKILL: a process killed in a
    system call it cannot leave (its sync thread in ``syncfs``, waiting for
    write-back on a busy disk) dies only when that returns, seconds later at
    times, and its sockets take in bytes meanwhile that no code of it can
    read. Counted, they made the throttled 4 MiB objects of
    ``test_chaos_fast`` look re-fetched by 2-3 MB over one or two kills.

The suite runs a short loop (``tests/e2e/test_crash.py``); long ones run
by hand, through ``bench/chaos.py`` (from the repository root)::

    python bench/chaos.py --kills 50
    python bench/chaos.py --kills 200 --seed 7 --large-size 16MiB
"""

from __future__ import annotations

import argparse
import hashlib
import random
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.home import Home, counters_match_rows, new_home
from harness.httpd import Fault, RequestRecord, TestHTTPServer, parse_size


@dataclass
class Plan:
    """The shape of each generation and of the kills."""

    kills: int = 5
    large: int = 3
    large_size: int = 6 << 20
    rate: int = 3_000_000  # bytes/s per large object, so kills land mid-body
    small: int = 150
    chunk: int = 512 << 10
    min_delay: float = 0.2  # seconds from start of ``run`` to the kill
    max_delay: float = 2.0
    seed: int = 0


@dataclass
class Generation:
    number: int
    bucket: str
    paths: dict[str, str]  # object name -> server path
    job_id: str = ""


@dataclass
class Report:
    kills: int = 0
    objects_checked: int = 0
    jobs_checked: int = 0
    interrupted: int = 0  # GETs beyond the first, over every object
    refetched: int = 0  # bytes sent beyond the objects' sizes
    to_the_dead: int = 0  # bytes sent after a SIGKILL to an answer in flight (not counted above)
    worst: int = 0  # most bytes re-fetched for one interruption
    elapsed: float = 0.0
    per_kill: list[float] = field(default_factory=list)  # delay of each kill

    def line(self) -> str:
        return (
            f"kills={self.kills} jobs_checked={self.jobs_checked} objects_checked={self.objects_checked}"
            f" interrupted_attempts={self.interrupted} refetched_bytes={self.refetched}"
            f" worst_refetch_per_interruption={self.worst} sent_after_a_kill={self.to_the_dead}"
            f" elapsed={self.elapsed:.1f}s"
        )


class Chaos:
    """Drives one home against one test server."""

    def __init__(self, home: Home, httpd: TestHTTPServer, plan: Plan, log: Callable[[str], None] = print) -> None:
        self.home = home
        self.httpd = httpd
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.log = log
        self.report = Report()
        self.generations: list[Generation] = []
        self._digests: dict[str, str] = {}
        # bytes each answer in flight at a kill had been sent when the SIGKILL went out
        self._at_kill: dict[tuple[int, float], int] = {}
        home.env.update(DLENGINE_CHUNK=str(plan.chunk))

    def run(self) -> Report:
        began = time.monotonic()
        self._submit()
        while self.report.kills < self.plan.kills:
            self._cycle()
        self._finish()
        self.report.elapsed = time.monotonic() - began
        self.log(f"chaos: {self.report.line()}")
        return self.report

    # -- one generation

    def _submit(self) -> None:
        number = len(self.generations)
        gen = Generation(number, f"chaos{number}", {})
        for i in range(self.plan.large):
            path = f"/chaos/g{number}/big{i}.bin"
            self.httpd.put_generated(path, self.plan.large_size, seed=number * 100 + i)
            self.httpd.set_fault(path, Fault(rate=self.plan.rate))
            gen.paths[f"big{i}.bin"] = path
        for i in range(self.plan.small):
            path = f"/chaos/g{number}/s{i:04d}.bin"
            self.httpd.put(path, self.rng.randbytes(self.rng.randint(1, 20_000)))
            gen.paths[f"small/s{i:04d}.bin"] = path
        objects = {name: self.httpd.url + path for name, path in gen.paths.items()}
        gen.job_id = self.home.submit({"type": "multi", "bucket": {"name": gen.bucket}, "objects": objects})
        self.generations.append(gen)

    def _cycle(self) -> None:
        proc = self.home.spawn("run", "--quiet")
        delay = self.rng.uniform(self.plan.min_delay, self.plan.max_delay)
        try:
            proc.wait(delay)
        except subprocess.TimeoutExpired:  # still running: the kill is due
            self.home.kill(proc, signalled=self._mark_kill)
            self.report.kills += 1
            self.report.per_kill.append(delay)
            self._check_instant()
            return
        proc.communicate()
        self._verify(self.generations[-1])  # the job finished before the kill
        self._submit()

    def _finish(self) -> None:
        res = self.home.run("--quiet", timeout=600)
        assert res.returncode == 0, res.stderr
        self._verify(self.generations[-1])

    def _mark_kill(self) -> None:
        for record in self.httpd.requests:
            if record.end is None:  # (an answer outliving its client's death is capped at the first kill)
                self._at_kill.setdefault((record.connection, record.start), record.bytes_sent)

    # -- checks

    def _check_instant(self) -> None:
        """What must hold at every instant, whenever the kill landed."""
        conn = self.home.ledger()
        try:
            for gen in self.generations:
                counters_match_rows(conn, gen.job_id)
        finally:
            conn.close()
        gen = self.generations[-1]  # the earlier ones were verified whole
        for name, path in gen.paths.items():
            stored = self.home.find("ais", gen.bucket, name)
            assert stored is None or self._digest(stored) == self._expected(path), f"partial {name} visible"

    def _verify(self, gen: Generation) -> None:
        """A finished job: every object done, once, identical, fetched once."""
        status = self.home.status(gen.job_id)
        assert status["state"] == "finished", status
        assert (status["finished_cnt"], status["error_cnt"]) == (len(gen.paths), 0), status
        assert self.home.ls(f"ais://{gen.bucket}") == {
            n: len(self.httpd.expected_bytes(p)) for n, p in gen.paths.items()
        }
        conn = self.home.ledger()
        try:
            counters_match_rows(conn, gen.job_id)
            rows = conn.execute(
                "SELECT count(*), count(DISTINCT name) FROM objects o JOIN jobs j ON j.seq = o.job WHERE j.id = ?",
                (gen.job_id,),
            ).fetchone()
            assert tuple(rows) == (len(gen.paths),) * 2
            # a kill -9 of the whole group is no object's fault: no row counts a death of its worker
            deaths = conn.execute(
                "SELECT coalesce(sum(o.deaths), 0) FROM objects o JOIN jobs j ON j.seq = o.job WHERE j.id = ?",
                (gen.job_id,),
            ).fetchone()[0]
            assert deaths == 0, f"{gen.job_id}: {deaths} worker deaths counted"
        finally:
            conn.close()
        gets: dict[str, list[RequestRecord]] = {}
        for record in self.httpd.requests:
            if record.method == "GET":
                gets.setdefault(record.path, []).append(record)
        for name, path in gen.paths.items():
            stored = self.home.find("ais", gen.bucket, name)
            assert stored is not None and self._digest(stored) == self._expected(path), name
            self._count_refetch(path, gets.get(path, []))
        self.report.objects_checked += len(gen.paths)
        self.report.jobs_checked += 1

    def _count_refetch(self, path: str, records: list[RequestRecord]) -> None:
        gets = len(records)
        sent = alive = 0  # all the bytes sent; those sent while the client could read them
        for r in records:
            sent += r.bytes_sent
            alive += min(r.bytes_sent, self._at_kill.get((r.connection, r.start), r.bytes_sent))
        self.report.to_the_dead += sent - alive
        extra = alive - len(self.httpd.expected_bytes(path))
        assert extra <= (gets - 1) * self.plan.chunk, (
            f"{path}: {extra} bytes twice over {gets - 1} interruptions ({sent - alive} more sent after a kill)"
        )
        self.report.interrupted += gets - 1
        self.report.refetched += extra
        if gets > 1:
            self.report.worst = max(self.report.worst, extra // (gets - 1))

    def _expected(self, path: str) -> str:
        if path not in self._digests:
            self._digests[path] = hashlib.md5(self.httpd.expected_bytes(path), usedforsecurity=False).hexdigest()
        return self._digests[path]

    @staticmethod
    def _digest(path: Path) -> str:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "md5").hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--large", type=int, default=Plan.large)
    parser.add_argument("--large-size", type=parse_size, default=Plan.large_size)
    parser.add_argument("--rate", type=parse_size, default=Plan.rate, help="bytes/s per large object")
    parser.add_argument("--small", type=int, default=Plan.small)
    parser.add_argument("--chunk", type=parse_size, default=Plan.chunk)
    parser.add_argument("--max-delay", type=float, default=Plan.max_delay)
    args = parser.parse_args(argv)
    plan = Plan(
        kills=args.kills, large=args.large, large_size=args.large_size, rate=args.rate, small=args.small,
        chunk=args.chunk, max_delay=args.max_delay, seed=args.seed,
    )  # fmt: skip
    print(f"chaos: seed={plan.seed} {plan}", flush=True)
    with tempfile.TemporaryDirectory(prefix="dlengine-chaos-") as tmp, TestHTTPServer() as httpd:
        home = new_home(Path(tmp) / "home")
        try:
            report = Chaos(home, httpd, plan, log=lambda s: print(s, flush=True)).run()
        finally:
            home.stop_all()
    print(f"kills: {report.kills}")
    print(f"objects checked: {report.objects_checked} (in {report.jobs_checked} jobs)")
    print(f"interrupted attempts: {report.interrupted}, bytes re-fetched: {report.refetched}")
    print(f"worst re-fetch per interruption: {report.worst} bytes (bound: chunk = {plan.chunk})")
    return 0

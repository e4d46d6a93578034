"""The throttle in process: no throttle for an unlimited job, read sizes
that follow the rate, one token bucket shared by processes, one rate per
job, a cancel that ends a long wait. End to end: tests/e2e/test_limits.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from dlengine import throttle
from dlengine.ledger import db, jobs
from dlengine.ledger.models import NewJob, Task


def _ledger_with_jobs(path: Path, count: int) -> list[int]:
    """A ledger holding ``count`` jobs; returns their seqs (the bucket keys)."""
    conn = db.connect(path)
    records = [NewJob(jobs.new_job_id(), "single", "t", "ais", "", "b", "{}") for _ in range(count)]
    ids = [jobs.create_job(conn, record, iter([("o", "http://h/o")]), lambda _n: "/mp") for record in records]
    seqs = [jobs.job_row(conn, job_id)["seq"] for job_id in ids]
    conn.close()
    return seqs


def _task(seq: int, bytes_per_hour: int) -> Task:
    return Task(
        id=1, job_id=f"dnl-{seq}", job_seq=seq, name="o", link="http://h/o", mountpath_id=1, attempts=1,
        provider="ais", namespace="", bucket="b", timeout=0.0, bytes_per_hour=bytes_per_hour,
    )  # fmt: skip


def _granted_rate(takers: list[throttle.Throttle], seconds: float, read: int = 4096) -> float:
    """Bytes per second granted to threads calling ``take(read)`` in a loop
    (two per taker) during ``seconds``."""
    granted = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def loop(taker: throttle.Throttle) -> None:
        while time.monotonic() < deadline:
            taker.take(read)
            with lock:
                granted[0] += read if time.monotonic() <= deadline else 0

    threads = [threading.Thread(target=loop, args=(t,)) for t in takers for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return granted[0] / seconds


def test_unlimited_jobs_get_no_throttle_and_full_reads(tmp_path: Path) -> None:
    throttles = throttle.Throttles(tmp_path / "ledger.db", 1 << 20)
    assert throttles.hook(_task(seq=1, bytes_per_hour=0)) is None
    assert throttles.read_size(0) == 1 << 20
    assert not (tmp_path / "ledger.db").exists()  # not even a connection


def test_read_size_follows_the_rate_within_bounds() -> None:
    assert throttle.read_size(3600 * 1_000, 1 << 20) == throttle.MIN_READ  # 1 kB/s
    assert throttle.read_size(3600 * 320_000, 1 << 20) == 20_000  # 1/16 s of 320 kB/s
    assert throttle.read_size(3600 * 100_000_000, 1 << 20) == throttle.MAX_READ
    assert throttle.read_size(3600 * 100_000_000, 8192) == 8192  # never above the configured chunk


def test_processes_share_one_bucket(tmp_path: Path) -> None:
    (seq,) = _ledger_with_jobs(tmp_path / "ledger.db", 1)
    limit = 400_000 * 3600
    # two Throttles objects with their own connections: two worker processes
    processes = [throttle.Throttles(tmp_path / "ledger.db", 1 << 20) for _ in range(2)]
    rate = _granted_rate([p.get("job", seq, limit) for p in processes], 1.5)
    assert abs(rate / 400_000 - 1) < 0.05, rate


def test_each_job_gets_its_own_rate(tmp_path: Path) -> None:
    slow, fast = _ledger_with_jobs(tmp_path / "ledger.db", 2)
    throttles = throttle.Throttles(tmp_path / "ledger.db", 1 << 20)
    rates: dict[str, float] = {}
    runs = [
        threading.Thread(
            target=lambda: rates.update(slow=_granted_rate([throttles.get("s", slow, 200_000 * 3600)], 1.5))
        ),
        threading.Thread(
            target=lambda: rates.update(fast=_granted_rate([throttles.get("f", fast, 800_000 * 3600)], 1.5))
        ),
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert abs(rates["slow"] / 200_000 - 1) < 0.05, rates
    assert abs(rates["fast"] / 800_000 - 1) < 0.05, rates


def test_cancel_ends_a_long_wait(tmp_path: Path) -> None:
    (seq,) = _ledger_with_jobs(tmp_path / "ledger.db", 1)
    hook_cancel = threading.Event()
    hook = throttle.Throttles(tmp_path / "ledger.db", 1 << 20).hook(_task(seq, 1_000 * 3600), hook_cancel)
    assert hook is not None
    threading.Timer(0.2, hook_cancel.set).start()
    started = time.monotonic()
    hook(4096)  # four seconds' worth at 1 kB/s
    assert time.monotonic() - started < 2

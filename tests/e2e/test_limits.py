"""Job limits end to end, observed from the test server's side: connections
(peak requests in flight), bytes per hour (bytes the server sent per second)
and the per-request timeout, with real worker processes.

Rates are measured as the slope of the server's byte counters over a few
seconds once the transfer has settled. The server's socket send buffers are
shrunk to 64 KiB for those tests: by default Linux lets ~4 MB per connection
pile up in them at once, which the server counts as sent although the client
has not read it, so a few seconds' window would measure the kernel, not the
throttle (``bench/limits.py`` measures a minute with default buffers).
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import statistics
import time

import pytest

from harness.httpd import Fault, TestHTTPServer
from tests.conftest import Home, wait_for

HUGE = 1 << 31  # generated on the fly: no object ends during a measurement; fits the free space checked
TOLERANCE = 0.10  # a 4 s window; the benchmark checks ±5% over a minute
WARMUP = 1.0
WINDOW = 4.0


def _small_send_buffers(httpd: TestHTTPServer) -> None:
    """Accepted sockets inherit the listener's (locked) send buffer size."""
    httpd.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)


def _huge_objects(httpd: TestHTTPServer, prefix: str, count: int) -> list[str]:
    paths = [f"{prefix}{i}.bin" for i in range(count)]
    for i, path in enumerate(paths):
        httpd.put_generated(path, HUGE, seed=i)
    return paths


def _limited_job(httpd: TestHTTPServer, bucket: str, paths: list[str], bytes_per_hour: int) -> dict[str, object]:
    return {
        "type": "multi",
        "bucket": {"name": bucket},
        "objects": [httpd.url + p for p in paths],
        "limits": {"bytes_per_hour": bytes_per_hour},
    }


def _measure(httpd: TestHTTPServer, groups: dict[str, list[str]]) -> dict[str, float]:
    """Bytes per second the server sent for each group of paths: the slope
    of its counters over ``WINDOW`` seconds, ``WARMUP`` seconds after every
    group got its first bytes."""

    def sent() -> dict[str, int]:
        return {name: sum(httpd.bytes_sent_for(p) for p in paths) for name, paths in groups.items()}

    wait_for(lambda: all(sent().values()))
    time.sleep(WARMUP)
    samples: list[tuple[float, dict[str, int]]] = []
    end = time.monotonic() + WINDOW
    while time.monotonic() < end:
        samples.append((time.monotonic(), sent()))
        time.sleep(0.05)
    times = [t for t, _ in samples]
    return {name: statistics.linear_regression(times, [s[name] for _, s in samples]).slope for name in groups}


def _assert_rate(measured: float, limit_per_hour: int) -> None:
    expected = limit_per_hour / 3600
    error = measured / expected - 1
    assert abs(error) <= TOLERANCE, f"{measured:,.0f} B/s vs limit {expected:,.0f} B/s ({error:+.1%})"


def _running_owners(home: Home) -> int:
    conn = sqlite3.connect(home.path / "ledger.db")
    try:
        return int(conn.execute("SELECT COUNT(DISTINCT owner) FROM objects WHERE state = 'running'").fetchone()[0])
    finally:
        conn.close()


# -- the token bucket on its own: exact, fast, no network


# -- end to end, observed from the server


def test_connection_limit_is_the_peak_across_processes(home: Home, httpd: TestHTTPServer) -> None:
    # 2 threads per process: a peak of 3 needs both processes, and holding
    # it at 3 needs a limit that both of them respect.
    home.env.update(DLENGINE_WORKERS="2", DLENGINE_THREADS="2")
    for i in range(9):
        httpd.put_generated(f"/c/obj{i}.bin", 30_000, seed=i)
    # slow to answer, not slow to send: a paced body (Fault.rate) keeps the
    # server's request open for a last pause after the client has every byte
    httpd.set_default_fault(Fault(delay=0.3))
    links = [f"{httpd.url}/c/obj{i}.bin" for i in range(9)]
    home.submit({"type": "multi", "bucket": {"name": "lim"}, "objects": links, "limits": {"connections": 3}})
    assert home.run().returncode == 0
    httpd.wait_idle()
    assert httpd.peak_concurrency == 3

    httpd.reset_stats()
    home.submit({"type": "multi", "bucket": {"name": "free"}, "objects": links})
    assert home.run().returncode == 0
    assert httpd.peak_concurrency > 3


def test_two_jobs_each_get_their_own_rate_and_slow_no_other(home: Home, httpd: TestHTTPServer) -> None:
    home.env.update(DLENGINE_WORKERS="2", DLENGINE_THREADS="3")
    _small_send_buffers(httpd)
    slow, fast = _huge_objects(httpd, "/two/slow", 2), _huge_objects(httpd, "/two/fast", 2)
    free = [f"/two/free{i}.bin" for i in range(4)]
    for i, path in enumerate(free):
        httpd.put_generated(path, 10_000_000, seed=i)
    slow_limit, fast_limit = 2_000_000 * 3600, 6_000_000 * 3600
    home.submit(_limited_job(httpd, "slow", slow, slow_limit))
    home.submit(_limited_job(httpd, "fast", fast, fast_limit))
    home.submit({"type": "multi", "bucket": {"name": "free"}, "objects": [httpd.url + p for p in free]})
    home.spawn("run")
    rates = _measure(httpd, {"slow": slow, "fast": fast})
    _assert_rate(rates["slow"], slow_limit)
    _assert_rate(rates["fast"], fast_limit)
    # the unlimited job ran beside them at its own speed: 40 MB would take
    # 7 s at the fast job's rate, 20 s at the slow one's
    gets = [r for r in httpd.requests if r.path in free]
    assert len(gets) == 4 and all(r.end is not None for r in gets)
    assert max(r.end or 0 for r in gets) - min(r.start for r in gets) < 4
    home.stop_all()


@pytest.mark.parametrize(
    ("timeout", "configured"),
    [("1s", "60"), ("0s", "1")],
    ids=["job-timeout", "0s-means-configured-default"],
)
def test_stalled_server_times_out_and_retries(home: Home, httpd: TestHTTPServer, timeout: str, configured: str) -> None:
    home.env["DLENGINE_TIMEOUT"] = configured
    httpd.put_generated("/t/obj.bin", 200_000)
    httpd.set_fault("/t/obj.bin", Fault(stall_after=50_000, stall_seconds=120, times=1))
    job = {"type": "single", "bucket": {"name": "t"}, "link": f"{httpd.url}/t/obj.bin", "timeout": timeout}
    job_id = home.submit(job)
    assert home.run(timeout=60).returncode == 0
    gets = [r for r in httpd.requests if r.path == "/t/obj.bin" and r.method == "GET"]
    assert len(gets) == 2
    # 1 s timeout + at most 1.5 s backoff: nowhere near the 120 s stall
    assert gets[1].start - gets[0].start < 10
    status = home.status(job_id)
    assert (status["finished_cnt"], status["error_cnt"]) == (1, 0)
    stored = home.find("ais", "t", "obj.bin")
    assert stored is not None and stored.read_bytes() == httpd.expected_bytes("/t/obj.bin")


def test_limits_survive_a_restart(home: Home, httpd: TestHTTPServer) -> None:
    # 2 threads in each of 2 processes: 3 connections span both processes,
    # which then share one bucket, and a fourth is possible but refused
    home.env.update(DLENGINE_WORKERS="2", DLENGINE_THREADS="2")
    _small_send_buffers(httpd)
    paths = _huge_objects(httpd, "/rs/obj", 4)
    limit = 3_000_000 * 3600  # 10.8GB per hour
    template = f"{httpd.url}/rs/obj{{0..3}}.bin"
    res = home.cli("download", template, "ais://rs", "--max-conns", "3", "--limit-bph", "10.8GB", "--no-start")
    assert res.returncode == 0, res.stderr
    job_id = res.stdout.strip().splitlines()[-1]
    assert home.status(job_id)["limits"] == {"connections": 3, "bytes_per_hour": limit}
    shown = home.cli("show", job_id, "-v").stdout
    assert "Connections: 3" in shown and "Bytes/hour:  10.1 GiB" in shown

    first = home.spawn("run")
    wait_for(lambda: httpd.bytes_sent > 1_000_000)
    os.killpg(first.pid, signal.SIGKILL)  # the supervisor and its workers
    first.wait(10)
    assert httpd.wait_idle()
    httpd.reset_stats()

    home.spawn("run")
    rate = _measure(httpd, {"job": paths})["job"]
    assert _running_owners(home) == 2
    assert httpd.peak_concurrency == 3
    _assert_rate(rate, limit)
    home.stop_all()

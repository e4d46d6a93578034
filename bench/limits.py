#!/usr/bin/env python3
"""Long accuracy check of job limits, measured from the server's side.

``limits.bytes_per_hour``: for each rate (default 2 MB/s and 20 MB/s, that
is 7.2 GB/h and 72 GB/h) a fresh ``DLENGINE_HOME`` gets one job of huge
generated objects, one per download thread (2 worker processes x 4 threads,
no connection limit), and ``dlengine run`` downloads it from the test HTTP
server (``harness/httpd.py``, in this process, default socket buffers). The
server's byte counter is sampled every 0.1 s; after a warm-up (default 5 s)
the rate over the next 60 s is the least-squares slope of the counter over
those 600 samples. Then both rates run at once as two jobs (4 objects each).
The objects never end during the window, so no request boundary falls
inside it.

Also reported: the rate from the window's first and last samples alone
(noisier: the server counts bytes its kernel buffers, whose fill level
wanders by megabytes), the rate over the whole run from the first byte
(which includes the initial burst), the initial burst itself (bytes sent in
the first second beyond one second's worth; mostly the kernel's socket
buffers), and the rate at which dlengine's work files grew over the window
(the client's side).

``limits.connections``: a job of 24 objects that each take half a second,
with limits 1, 3, 6 and none: the most requests the server had in flight.

Results go to stdout and to ``bench/RESULTS-limits.md`` (overwritten).
Only 127.0.0.1 is used.

Usage (from the repository root)::

    python3 bench/limits.py                   # ~4 minutes
    python3 bench/limits.py --seconds 10 --warmup 2 --no-results   # a quick look
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.httpd import Fault, TestHTTPServer  # noqa: E402

MB = 1_000_000
HUGE = 1 << 40  # generated on the fly, never finished within a run
SAMPLE_EVERY = 0.1
DEFAULT_RESULTS = REPO / "bench" / "RESULTS-limits.md"
GOAL = 0.05  # the issue: within ±5% over a minute


@dataclass(frozen=True)
class RateResult:
    scenario: str
    limit: float  # bytes per second
    window: float  # bytes per second, endpoints of the window
    slope: float  # bytes per second, least squares over the window
    whole: float  # bytes per second, first byte to end of window
    burst: float  # bytes in the first second beyond one second's worth
    client: float  # bytes per second the work files grew in the window

    def error(self, value: float) -> float:
        return value / self.limit - 1


@dataclass(frozen=True)
class ConnResult:
    limit: int
    peak: int
    threads: int


# ---------------------------------------------------------------- plumbing


def log(msg: str) -> None:
    print(f"[limits {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def child_env(home: Path, workers: int, threads: int) -> dict[str, str]:
    """No proxies, no inherited DLENGINE_* knobs."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("DLENGINE_")}
    env.update(
        DLENGINE_HOME=str(home),
        DLENGINE_WORKERS=str(workers),
        DLENGINE_THREADS=str(threads),
        DLENGINE_LINGER="0",
        PYTHONPATH=str(REPO),
    )
    return env


def dlengine(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    res = subprocess.run(
        [sys.executable, "-m", "dlengine", *args], env=env, input=stdin, capture_output=True, text=True, timeout=120
    )
    if res.returncode != 0:
        raise SystemExit(f"dlengine {' '.join(args)} failed: {res.stderr.strip()}")
    return res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""


def submit(env: dict[str, str], job: dict[str, Any]) -> str:
    return dlengine(env, "submit", "-", "--no-start", stdin=json.dumps(job))


@contextmanager
def running(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """``dlengine run`` in its own process group, killed (with its workers)
    on the way out."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlengine", "run", "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(30)


@contextmanager
def fresh_home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dlengine-limits-"))
    try:
        yield path / "home"
    finally:
        shutil.rmtree(path, ignore_errors=True)


def row_ids(home: Path, job_id: str) -> set[int]:
    """Ledger row ids of a job's objects: they name its work files."""
    conn = sqlite3.connect(home / "ledger.db")
    try:
        sql = "SELECT o.id FROM objects o JOIN jobs j ON j.seq = o.job WHERE j.id = ?"
        return {row[0] for row in conn.execute(sql, (job_id,))}
    finally:
        conn.close()


def work_bytes(home: Path, ids: set[int]) -> int:
    """Bytes in the work files of these rows: what dlengine has read."""
    total = 0
    for row in ids:
        try:
            total += (home / "data" / ".work" / f"{row}.part").stat().st_size
        except FileNotFoundError:
            pass
    return total


# ---------------------------------------------------------------- bytes per hour


def rate_job(
    server: TestHTTPServer, name: str, rate: float, count: int, pace: float
) -> tuple[dict[str, Any], list[str]]:
    """A job of ``count`` huge objects limited to ``rate`` bytes/s; the
    server sends each at most ``pace`` times its share of the rate."""
    paths = [f"/{name}/obj{i}.bin" for i in range(count)]
    for i, path in enumerate(paths):
        server.put_generated(path, HUGE, seed=i)
        if pace:
            # Only for accounting: a paced server writes rate/20-byte pieces
            # and counts each once written; unpaced it writes 1 MiB pieces,
            # so its counter climbs in steps of 1 MiB x connections.
            server.set_fault(path, Fault(rate=int(pace * rate / count)))
    job = {
        "type": "multi",
        "bucket": {"name": name},
        "description": f"limits bench {name}",
        "objects": [server.url + p for p in paths],
        "limits": {"bytes_per_hour": int(rate * 3600)},
    }
    return job, paths


Sample = tuple[float, dict[str, int], dict[str, int]]  # time, server bytes and work file bytes per group


def sample(
    server: TestHTTPServer,
    groups: dict[str, list[str]],
    home: Path,
    ids: dict[str, set[int]],
    warmup: float,
    seconds: float,
) -> tuple[float, list[Sample]]:
    """(time of the first byte, samples) until ``warmup + seconds`` after
    every group's first byte."""

    def sent() -> dict[str, int]:
        return {name: sum(server.bytes_sent_for(p) for p in paths) for name, paths in groups.items()}

    deadline = time.monotonic() + 60
    while not all(sent().values()):
        if time.monotonic() > deadline:
            raise SystemExit("no bytes within 60 s: is dlengine running?")
        time.sleep(0.01)
    first = time.monotonic()
    samples = []
    while time.monotonic() < first + warmup + seconds + SAMPLE_EVERY:
        samples.append((time.monotonic(), sent(), {name: work_bytes(home, rows) for name, rows in ids.items()}))
        time.sleep(SAMPLE_EVERY)
    return first, samples


def summarize(
    scenario: str, group: str, limit: float, first: float, samples: list[Sample], warmup: float, seconds: float
) -> RateResult:
    window = [s for s in samples if first + warmup <= s[0] <= first + warmup + seconds]
    (t0, b0, c0), (t1, b1, c1) = window[0], window[-1]
    slope = statistics.linear_regression([s[0] for s in window], [s[1][group] for s in window]).slope
    one_second = next(s for s in samples if s[0] >= first + 1.0)
    return RateResult(
        scenario=scenario,
        limit=limit,
        window=(b1[group] - b0[group]) / (t1 - t0),
        slope=slope,
        whole=b1[group] / (t1 - first),
        burst=one_second[1][group] - limit * (one_second[0] - first),
        client=(c1[group] - c0[group]) / (t1 - t0),
    )


def bench_rates(args: argparse.Namespace, rates: dict[str, float]) -> list[RateResult]:
    """Run the jobs of ``rates`` (name -> bytes/s) at once, sharing the
    download threads evenly."""
    threads = args.workers * args.threads
    with TestHTTPServer() as server, fresh_home() as home:
        env = child_env(home, args.workers, args.threads)
        groups, ids = {}, {}
        for name, rate in rates.items():
            job, groups[name] = rate_job(server, name, rate, threads // len(rates), args.pace)
            ids[name] = row_ids(home, submit(env, job))
        label = " + ".join(f"{r / MB:g} MB/s" for r in rates.values())
        log(f"{label}: {args.warmup:g} s warm-up, then {args.seconds:g} s measured")
        with running(env):
            first, samples = sample(server, groups, home, ids, args.warmup, args.seconds)
        scenario = "alone" if len(rates) == 1 else "together"
        return [summarize(scenario, n, r, first, samples, args.warmup, args.seconds) for n, r in rates.items()]


# ---------------------------------------------------------------- connections


def bench_connections(args: argparse.Namespace, limit: int) -> ConnResult:
    with TestHTTPServer() as server, fresh_home() as home:
        env = child_env(home, args.workers, args.threads)
        for i in range(24):
            server.put_generated(f"/c/obj{i:02d}.bin", 100_000, seed=i)
        # slow to answer, not slow to send: a paced body (Fault.rate) keeps
        # the server's request open for a last pause after the client has it all
        server.set_default_fault(Fault(delay=0.5))
        job: dict[str, Any] = {
            "type": "range",
            "bucket": {"name": "c"},
            "template": server.url + "/c/obj{00..23}.bin",
        }
        if limit:
            job["limits"] = {"connections": limit}
        submit(env, job)
        with running(env) as proc:
            proc.wait(120)
        server.wait_idle()
        return ConnResult(limit, server.peak_concurrency, args.workers * args.threads)


# ---------------------------------------------------------------- report


def wmem_max() -> int:
    """Largest TCP send buffer Linux grows a socket to (0 if unknown)."""
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return 0


def pct(value: float) -> str:
    return f"{value * 100:+.2f}%"


def rate_table(results: Sequence[RateResult], seconds: float) -> list[str]:
    lines = [
        f"| scenario | limit | rate over {seconds:g} s (server) | error | two-point error | whole run error"
        " | initial burst | work files grew | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        verdict = "ok" if abs(r.error(r.slope)) <= GOAL else "MISSED"
        lines.append(
            f"| {r.scenario} | {r.limit / MB:g} MB/s ({r.limit * 3600 / 1e9:g} GB/h) | {r.slope / MB:.4f} MB/s"
            f" | {pct(r.error(r.slope))} | {pct(r.error(r.window))} | {pct(r.error(r.whole))}"
            f" | {r.burst / MB:.1f} MB | {pct(r.error(r.client))} | {verdict} |"
        )
    return lines


def conn_table(results: Sequence[ConnResult]) -> list[str]:
    lines = ["| limits.connections | download threads | peak requests in flight | verdict |", "|---|---|---|---|"]
    for r in results:
        ok = r.peak == r.limit if r.limit else r.peak > 1
        lines.append(f"| {r.limit or 'none'} | {r.threads} | {r.peak} | {'ok' if ok else 'MISSED'} |")
    return lines


def report(args: argparse.Namespace, rates: Sequence[RateResult], conns: Sequence[ConnResult]) -> str:
    command = "python3 bench/limits.py " + " ".join(args.argv)
    lines = [
        "# Limits benchmark (bench/limits.py)",
        "",
        f"Generated {dt.datetime.now().strftime('%Y-%m-%d %H:%M')} by `{command.strip()}` on"
        f" {platform.system()} {platform.release()}, {os.cpu_count()} CPUs, Python {platform.python_version()};"
        f" {args.workers} worker processes x {args.threads} download threads.",
        "",
        "## limits.bytes_per_hour, measured by the server",
        "",
        f"Goal: within ±{GOAL:.0%} of the limit over a minute. The window starts {args.warmup:g} s after the first"
        f" byte and lasts {args.seconds:g} s; the rate is the least-squares slope of the server's byte counter"
        f' over it ({args.seconds / SAMPLE_EVERY:.0f} samples). "alone": one job,'
        f' {args.workers * args.threads} connections; "together": both jobs at once,'
        f" {args.workers * args.threads // 2} connections each.",
        "",
        *rate_table(rates, args.seconds),
        "",
        "- *two-point error*: from the window's first and last samples only (see below).",
        "- *whole run error*: from the first byte to the end of the window, so it includes the initial burst.",
        "- *initial burst*: bytes the server counted in the first second beyond one second's worth.",
        "- *work files grew*: dlengine's side: how fast its `.part` files grew in the window.",
        "",
        "Reading the figures:",
        "",
        "- dlengine's own accuracy is the *work files grew* column: what its download threads were allowed to"
        " read, from a token bucket per job in the ledger that every worker process takes from.",
        "- The server counts a byte as sent once its kernel accepts it, and Linux grows each connection's send"
        f" buffer up to {wmem_max() / MB:.1f} MB (`net.ipv4.tcp_wmem`) whatever window the client advertises."
        ' So in its first second the server "sends" that much per connection, which dlengine reads later at'
        " the limited rate: the initial burst, and the whole-run error at the low rate. dlengine's own share of"
        " it is one read per connection (at most 64 KiB for a limited job) that is paid for after it is read."
        " Fewer connections (`limits.connections`) make the burst smaller; after it the server's rate is the"
        " limit (the error column).",
        "- The fill level of those buffers keeps wandering by a few MB, so a rate from two samples alone (the"
        " *two-point error*) is off by several percent at 2 MB/s with 8 connections (up to 6% seen) although"
        " dlengine reads at the limit: hence the slope over every sample.",
        f"- The server paces each connection at {args.pace:g}x its share of the limit (`--pace`; 0 = unpaced),"
        " far above what the bucket allows, only so that it writes small pieces and its counter moves smoothly."
        " Unpaced it writes 1 MiB pieces, and with 8 connections its counter climbs in 8 MiB steps: about ±7% on"
        " a 60 s window at 2 MB/s from where the steps happen to fall.",
        "",
        "## limits.connections, measured by the server",
        "",
        "24 objects of half a second each; the most requests the server had in flight at once.",
        "",
        *conn_table(conns),
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rates", default="2,20", help="limits in MB/s, comma-separated (default 2,20)")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window (default 60)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds skipped after the first byte")
    parser.add_argument(
        "--pace",
        type=float,
        default=16.0,
        help="the server sends each connection at most PACE times its share of the limit (0: unpaced)",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=4, help="download threads per worker (default 4)")
    parser.add_argument("--no-together", action="store_true", help="skip running the rates at once")
    parser.add_argument("--no-connections", action="store_true", help="skip the connection-limit runs")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="results file (Markdown)")
    parser.add_argument("--no-results", action="store_true", help="print only")
    args = parser.parse_args(argv)
    args.argv = list(argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    rates = [float(r) * MB for r in args.rates.split(",") if r.strip()]
    rate_results = [res for r in rates for res in bench_rates(args, {f"r{r / MB:g}": r})]
    if len(rates) > 1 and not args.no_together:
        rate_results += bench_rates(args, {f"r{r / MB:g}": r for r in rates})
    conn_results = [] if args.no_connections else [bench_connections(args, n) for n in (1, 3, 6, 0)]
    text = report(args, rate_results, conn_results)
    print(text)
    if not args.no_results:
        args.results.write_text(text)
        log(f"wrote {args.results}")
    missed = [r for r in rate_results if abs(r.error(r.slope)) > GOAL]
    missed_conns = [c for c in conn_results if c.limit and c.peak != c.limit]
    return 1 if missed or missed_conns else 0


if __name__ == "__main__":
    sys.exit(main())

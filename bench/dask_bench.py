#!/usr/bin/env python3
"""Small-object throughput through the Dask executor (issue #8).

N x S objects (default 2,000 x 10 KiB) from ``tests/httpd.py`` into moto's
S3 (write-through bucket), with 1, 2 and 4 Dask worker processes of a
``LocalCluster`` (one Dask thread each; each batch downloads in
``DLENGINE_THREADS`` threads), and the local pools for reference. Timed:
``dlengine run --executor ...`` from start to exit (the job is submitted
before). Also measured: moto's own PUT ceiling (boto3 ``put_object`` of S
bytes from 16 threads), which bounds every figure here.

    python bench/dask_bench.py [--count 2000] [--size 10240] [--workers 1,2,4]

Writes a Markdown table to stdout (bench/RESULTS-dask.md holds a run).
Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.cloud_servers import S3Server  # noqa: E402
from tests.httpd import TestHTTPServer  # noqa: E402


def moto_ceiling(s3: S3Server, size: int, seconds: float = 5.0) -> float:
    """PUTs per second moto takes from 16 threads."""
    client, bucket, body = s3.client(), f"ceiling-{uuid.uuid4().hex[:8]}", os.urandom(size)
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


def run_once(executor: str, s3: S3Server, httpd: TestHTTPServer, count: int, threads: int) -> float:
    """Seconds for one job of ``count`` objects; checks they all arrived."""
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    s3.client().create_bucket(Bucket=bucket)
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, **s3.env, "DLENGINE_HOME": home, "DLENGINE_THREADS": str(threads)}
        env["PYTHONPATH"] = str(ROOT)
        job = {
            "type": "range",
            "bucket": {"name": bucket, "provider": "s3"},
            "template": f"{httpd.url}/small/obj-{{00000..{count - 1:05d}}}.bin",
        }
        cli = [sys.executable, "-m", "dlengine"]
        subprocess.run(
            [*cli, "submit", "-", "--no-start"],
            input=json.dumps(job),
            env=env,
            text=True,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        start = time.monotonic()
        subprocess.run([*cli, "run", "--quiet", "--executor", executor], env=env, check=True)
        elapsed = time.monotonic() - start
    listed = sum(p.get("KeyCount", 0) for p in s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket))
    assert listed == count, f"{listed} of {count} objects in {bucket}"
    return elapsed


def measure(args: argparse.Namespace, s3: S3Server, httpd: TestHTTPServer) -> list[tuple[str, float]]:
    import distributed

    rows = [("local pools (1 process)", run_once("local", s3, httpd, args.count, args.threads))]
    print(rows[-1], file=sys.stderr, flush=True)
    for n in args.workers:
        cluster: Any = distributed.LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        )
        try:
            address = "dask://" + str(cluster.scheduler_address).removeprefix("tcp://")
            rows.append((f"dask, {n} worker process(es)", run_once(address, s3, httpd, args.count, args.threads)))
            print(rows[-1], file=sys.stderr, flush=True)
        finally:
            cluster.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--size", type=int, default=10 << 10)
    parser.add_argument("--threads", type=int, default=16, help="DLENGINE_THREADS (batch size, threads per batch)")
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    args.workers = [int(n) for n in args.workers.split(",")]
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        os.environ.pop(var, None)
    s3 = S3Server().start()
    os.environ.update(s3.env)  # the Dask workers inherit it
    with TestHTTPServer() as httpd:
        for i in range(args.count):
            httpd.put_generated(f"/small/obj-{i:05d}.bin", args.size, seed=i % 7)
        ceiling = moto_ceiling(s3, args.size)
        rows = measure(args, s3, httpd)
    s3.stop()
    print(f"{args.count} x {args.size} B, HTTP -> moto S3, {os.cpu_count()} cores, DLENGINE_THREADS={args.threads}\n")
    print("| executor | seconds | objects/s |\n|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} | {args.count / seconds:.0f} |")
    print(f"| moto PUT ceiling (16 threads, no download) | | {ceiling:.0f} |")


if __name__ == "__main__":
    main()

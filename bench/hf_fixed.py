#!/usr/bin/env python3
"""The fixed cost of a small HF job, for several dlengine checkouts
interleaved (issue 17: "a job of a few objects finishes in <= 0.15 s of
fixed cost").

A repo of two files (one small, one 256 KiB LFS file behind nginx) on the
bench's fake Hub (``bench/hfhub.py``). Per repetition and checkout (order
alternating), in a fresh home, the wall time of what a user waits for:

1. ``dlengine download --hf-dataset R ais://b --wait`` (lists, submits,
   starts a background supervisor, waits for the job);
2. the same again, nothing changed (ends in the command);
3. ``dlengine download hf://datasets/R/small.txt ais://c --wait``;

and the CPU of every process of step 1 done as ``download --no-start`` +
``run`` (the supervisor and its workers are children of ``run``). The
transfers themselves are a few hundred KiB on loopback: what is measured is
the fixed cost. Medians (min-max) in a Markdown table on stdout.

    python3 bench/hf_fixed.py --checkout before=/path/a --checkout after=/path/b [--reps 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hf_bench import Hub, Repo

from bench import Server, clean_env  # bench/bench.py, beside this file

REPO = "bench/fixed"
CPU_STEP = "CPU of all processes (no-start + run)"
_HF = {"HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


def steps() -> dict[str, list[str]]:
    dataset = ["download", "--hf-dataset", REPO, "ais://b", "--wait"]
    return {
        "repo of 2 files, --wait": dataset,
        "unchanged re-run": dataset,
        "one hf:// link, --wait": ["download", f"hf://datasets/{REPO}/small.txt", "ais://c", "--wait"],
    }


def run(checkout: Path, home: Path, hub: Hub, args: list[str]) -> tuple[float, float]:
    """(wall s, CPU s of the children) of one dlengine command."""
    env = clean_env({"DLENGINE_HOME": str(home), "HF_ENDPOINT": hub.url, "HF_HOME": str(home / "hf"), **_HF})
    env["DLENGINE_LINGER"] = "0.3"  # the background supervisor leaves before the next step
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "dlengine", *args], cwd=checkout, env=env, capture_output=True, text=True, timeout=300
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise SystemExit(f"bench: {checkout}: dlengine {' '.join(args)} failed:\n{res.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def one_checkout(checkout: Path, hub: Hub, scratch: Path) -> dict[str, float]:
    out = {}
    scratch.mkdir(exist_ok=True)
    home = Path(tempfile.mkdtemp(dir=scratch))
    for name, args in steps().items():
        out[name] = run(checkout, home, hub, args)[0]
        time.sleep(0.8)  # no supervisor left from this step
    home = Path(tempfile.mkdtemp(dir=scratch))
    cpu = 0.0
    for args in (["download", "--hf-dataset", REPO, "ais://b", "--no-start"], ["run"]):
        cpu += run(checkout, home, hub, args)[1]
    out[CPU_STEP] = cpu
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    checkouts = {n: Path(p).resolve() for n, _, p in (c.partition("=") for c in args.checkout)}
    with tempfile.TemporaryDirectory(prefix="dlengine-hffixed-") as tmp:
        work = Path(tmp)
        cdn_root = work / "cdn"
        (cdn_root / "lfs").mkdir(parents=True)
        repo = Repo(REPO, work / "repo", cdn_root)
        repo.commit({"small.txt": b"small\n"}, lfs=False)
        repo.commit({"big.bin": os.urandom(256 << 10)}, lfs=True)
        for path in [cdn_root, cdn_root / "lfs", *(cdn_root / "lfs").iterdir()]:
            path.chmod(0o755)  # the nginx worker may run as another user
        server = Server("nginx", cdn_root, work)
        server.start(f"/lfs/{next((cdn_root / 'lfs').iterdir()).name}")
        hub = Hub(work, f"http://localhost:{server.port}")
        results: dict[str, dict[str, list[float]]] = {n: {} for n in checkouts}
        try:
            hub.publish({f"dataset:{REPO}": repo.state(1)})
            for rep in range(args.reps):
                names = list(checkouts) if rep % 2 == 0 else list(checkouts)[::-1]
                for name in names:
                    for step, value in one_checkout(checkouts[name], hub, work / "homes").items():
                        results[name].setdefault(step, []).append(value)
                    shutil.rmtree(work / "homes", ignore_errors=True)
                print(f"rep {rep + 1} done", file=sys.stderr, flush=True)
        finally:
            hub.stop()
            server.stop()
    print(table(checkouts, results))


def table(checkouts: dict[str, Path], results: dict[str, dict[str, list[float]]]) -> str:
    names = list(checkouts)
    lines = ["| step | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for step in [*steps(), CPU_STEP]:
        cells = []
        for name in names:
            values = results[name][step]
            cells.append(f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})")
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

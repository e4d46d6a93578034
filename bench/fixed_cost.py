#!/usr/bin/env python3
"""The fixed cost of the commands a user runs for a small job and for an
empty cron run (issue 12: start-up <= 0.1 s; issue 17: a small job or a
re-run with nothing to do <= 0.15 s), for several checkouts interleaved.

Cases, each timed from process start to exit (wall) with the CPU of every
process it started (``RUSAGE_CHILDREN``; this process is a subreaper, so
a detached background supervisor is counted too, and waited for before the
next case):

- ``python -c pass``: the interpreter's floor (site, ``.pth`` files);
- ``--help``: the command line alone (its imports, the parser);
- ``run --quiet`` in a home whose jobs have all ended (a cron run);
- ``run --quiet`` of a range job of 4 new 10 KiB objects (submitted with
  ``--no-start`` just before): its spare workers, the downloads, the exit;
- ``download http://127.0.0.1:P/oN.bin ais://b --wait``: one new 10 KiB
  object (nginx) in a home that exists;
- ``submit job.json``: one new 10 KiB object; the command returns once the
  job is recorded and a background supervisor started (its wall is the
  command's, its CPU includes the supervisor's);
- ``download s3://small/k/ ais://dst --wait`` of 8 x 10 KiB on SeaweedFS,
  a re-run with nothing changed (when ``weed`` is installed).

Per round (``--reps``) each checkout in turn, the order alternating;
medians (min-max) in a Markdown table on stdout::

    python3 bench/fixed_cost.py --checkout before=/path/a --checkout after=. [--reps 5] [--python PY] [--no-s3]

``--python`` names the interpreter of the commands (a fresh venv's, without
this box's site-packages ``.pth`` hooks, which cost ~75 ms a process).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import Server, clean_env
from harness.seaweedfs import SeaweedFS, weed_binary

SIZE = 10 * 1024
RANGE = 4  # objects of the range job that run downloads


class Bench:
    def __init__(self, work: Path, http: str, s3_env: dict[str, str] | None, python: str) -> None:
        self.work = work
        self.python = python
        self.http = http
        self.s3_env = s3_env
        self.serial = 0
        self.servers: set[int] = set()  # pids not to wait for
        self.figures: dict[str, dict[str, list[tuple[float, float]]]] = {}

    def env(self, checkout: Path, home: Path) -> dict[str, str]:
        env = clean_env({"DLENGINE_HOME": str(home), "PYTHONPATH": str(checkout), "DLENGINE_LINGER": "0.3"})
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(self.work / "pycache")
        env.update(self.s3_env or {})
        return env

    def timed(self, cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
        """(wall s, CPU s of the whole tree) of one command; waits for every
        process it left behind (a background supervisor) before returning."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
        wall = time.perf_counter() - start
        if res.returncode != 0:
            raise SystemExit(f"bench: {' '.join(cmd)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
        for pid in self.orphans():
            os.waitpid(pid, 0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    def orphans(self) -> list[int]:
        """Processes this subreaper inherited (a detached supervisor), not
        the servers it started."""
        me, found = str(os.getpid()), []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in self.servers:
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if stat.rpartition(")")[2].split()[1] == me:
                found.append(int(entry.name))
        return found

    def new_object(self) -> str:
        self.serial += 1
        name = f"o{self.serial}.bin"
        (self.work / "www" / name).write_bytes(os.urandom(SIZE))
        return f"{self.http}/{name}"

    def cases(self, label: str, checkout: Path) -> dict[str, Callable[[], tuple[float, float]]]:
        py = self.python
        dl = [py, "-m", "dlengine"]
        home = self.work / "homes" / label
        shutil.rmtree(home, ignore_errors=True)
        env = self.env(checkout, home)
        self.timed([*dl, "download", self.new_object(), "ais://b", "--wait"], env, checkout)  # the home exists

        def submit() -> tuple[float, float]:
            job = self.work / "job.json"
            job.write_text(json.dumps({"type": "single", "bucket": {"name": "s"}, "link": self.new_object()}))
            return self.timed([*dl, "submit", str(job)], env, checkout)

        def run_range() -> tuple[float, float]:
            links = [self.new_object() for _ in range(RANGE)]
            template = links[0].rsplit("/", 1)[0] + f"/o{{{self.serial - RANGE + 1}..{self.serial}}}.bin"
            job = self.work / "range.json"
            job.write_text(json.dumps({"type": "range", "bucket": {"name": "r"}, "template": template}))
            self.timed([*dl, "submit", "--no-start", str(job)], env, checkout)
            return self.timed([*dl, "run", "--quiet"], env, checkout)

        cases: dict[str, Callable[[], tuple[float, float]]] = {
            "python -c pass": lambda: self.timed([py, "-c", "pass"], env, checkout),
            "--help": lambda: self.timed([*dl, "--help"], env, checkout),
            "run, nothing to do": lambda: self.timed([*dl, "run", "--quiet"], env, checkout),
            f"run of a range job ({RANGE} x 10 KiB; its spares, CPU of all)": run_range,
            "download URL ais://b --wait (1 x 10 KiB)": lambda: self.timed(
                [*dl, "download", self.new_object(), "ais://b", "--wait"], env, checkout
            ),
            "submit job.json (1 x 10 KiB)": submit,
        }
        if self.s3_env is not None:
            s3 = [*dl, "download", "s3://small/k/", "ais://dst", "--wait"]
            self.timed(s3, env, checkout)  # the first run; what is measured is the re-run
            cases["s3 re-run, nothing to do (8 x 10 KiB)"] = lambda: self.timed(s3, env, checkout)
        return cases

    def round(self, checkout: str, path: Path) -> None:
        for name, case in self.cases(checkout, path).items():
            self.figures.setdefault(name, {}).setdefault(checkout, []).append(case())


def start_s3(work: Path) -> tuple[SeaweedFS | None, dict[str, str] | None]:
    weed = weed_binary()
    if weed is None:
        print("bench: no SeaweedFS 'weed': the s3 case is left out", file=sys.stderr)
        return None, None
    store = SeaweedFS(work / "weed").start(weed)
    client = store.client()
    client.create_bucket(Bucket="small")
    for i in range(8):
        client.put_object(Bucket="small", Key=f"k/{i}.bin", Body=os.urandom(SIZE))
    return store, dict(store.env)


def table(checkouts: list[str], figures: dict[str, dict[str, list[tuple[float, float]]]]) -> str:
    head = " | ".join(f"{n} wall / CPU" for n in checkouts)
    lines = [f"| case | {head} |", "|---|" + "---|" * len(checkouts)]
    for case, per in figures.items():
        cells = []
        for name in checkouts:
            runs = per[name]
            walls, cpus = [w for w, _ in runs], [c for _, c in runs]
            cells.append(
                f"{statistics.median(walls):.3f} ({min(walls):.3f}-{max(walls):.3f})"
                f" / {statistics.median(cpus):.3f} ({min(cpus):.3f}-{max(cpus):.3f})"
            )
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--python", default=sys.executable, help="the interpreter of the commands (default: this one)")
    parser.add_argument("--no-s3", action="store_true", help="leave out the s3 case (no SeaweedFS)")
    args = parser.parse_args()
    checkouts = {n: Path(p).resolve() for n, _, p in (c.partition("=") for c in args.checkout)}
    ctypes.CDLL(None, use_errno=True).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: detached supervisors stay ours
    with tempfile.TemporaryDirectory(prefix="dlengine-fixed-") as tmp:
        work = Path(tmp)
        (work / "www").mkdir()
        (work / "www").chmod(0o755)  # the nginx worker may run as another user
        (work / "www" / "probe").write_bytes(b"x")
        server = Server("auto", work / "www", work)
        server.start("/probe")
        store, s3_env = (None, None) if args.no_s3 else start_s3(work)
        bench = Bench(work, server.base_url, s3_env, args.python)
        bench.servers = {p.pid for p in (server.proc, store.proc if store else None) if p is not None}
        load = [os.getloadavg()[0]]
        try:
            for rep in range(args.reps):
                names = list(checkouts) if rep % 2 == 0 else list(checkouts)[::-1]
                for name in names:
                    bench.round(name, checkouts[name])
                load.append(os.getloadavg()[0])
                print(f"round {rep + 1} done, load {load[-1]:.2f}", file=sys.stderr, flush=True)
        finally:
            server.stop()
            if store is not None:
                store.stop()
    print(f"load average (1 min) {min(load):.2f}-{max(load):.2f}; {args.reps} rounds; median (min-max), seconds")
    print(table(list(checkouts), bench.figures))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Instructions (callgrind's Ir, user space) of the commands a small job and
an empty cron run are made of, for several checkouts: the fixed cost of
issues 12 and 17 as a count that does not depend on this shared box's load
(no kernel time, fsync or page faults; see ``fixed_cost.py`` for CPU time).

Cases, each a fresh process under ``valgrind --tool=callgrind``, in a home
where two downloads already ran (nginx, 10 KiB objects):

- ``python -c pass``, ``--help``;
- ``run --quiet`` with nothing to do;
- ``download URL ais://b --wait`` of one new object (in the command);
- ``submit --no-start job.json`` (the command alone);
- ``submit job.json`` and ``run`` of a 4-object range job, with every
  process they start (``--trace-children``): the background supervisor, the
  workers. A forked worker's count includes what its parent had run before
  the fork (callgrind's counters go with the fork), so these two sums
  count the parent's start-up once per worker: compare them between
  checkouts, not with the others.

    python3 bench/fixed_instr.py --checkout before=/path/a --checkout after=. [--python PY]

``--python``: the interpreter of the commands (a fresh venv's, without
this box's site-packages ``.pth`` hooks). Millions of instructions, one run
each (the counts repeat to within ~0.5%), as a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import Server, clean_env

SIZE = 10 * 1024
RANGE = 4


class Counter:
    def __init__(self, work: Path, base_url: str, python: str) -> None:
        self.work = work
        self.base_url = base_url
        self.python = python
        self.serial = 0

    def new_object(self) -> str:
        self.serial += 1
        (self.work / "www" / f"o{self.serial}.bin").write_bytes(os.urandom(SIZE))
        return f"{self.base_url}/o{self.serial}.bin"

    def env(self, checkout: Path, home: Path) -> dict[str, str]:
        env = clean_env({"DLENGINE_HOME": str(home), "PYTHONPATH": str(checkout), "DLENGINE_LINGER": "0.3"})
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # (else every module compiles in every process)
        env["PYTHONPYCACHEPREFIX"] = str(self.work / "pycache")
        return env

    def plain(self, args: list[str], env: dict[str, str]) -> None:
        res = subprocess.run([self.python, *args], env=env, cwd=self.work, capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise SystemExit(f"bench: {args} failed:\n{res.stderr[-3000:]}")

    def counted(self, args: list[str], env: dict[str, str]) -> int:
        """Instructions of the command and every process it started (waited for)."""
        logs = self.work / "callgrind"
        shutil.rmtree(logs, ignore_errors=True)
        logs.mkdir()
        cmd = ["valgrind", "--tool=callgrind", "--trace-children=yes", "--callgrind-out-file=/dev/null"]
        cmd += [f"--log-file={logs}/%p.log", self.python, *args]
        res = subprocess.run(cmd, env=env, cwd=self.work, capture_output=True, text=True, timeout=600)
        if res.returncode != 0:
            raise SystemExit(f"bench: {args} failed:\n{res.stderr[-3000:]}")
        deadline = time.monotonic() + 60
        while True:  # a detached supervisor and its workers end after the linger
            texts = [p.read_text() for p in logs.iterdir()]
            if all("Collected" in t for t in texts) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        return sum(int(n.replace(",", "")) for t in texts for n in re.findall(r"Collected : ([\d,]+)", t))

    def cases(self, checkout: Path, home: Path) -> dict[str, Callable[[], int]]:
        env = self.env(checkout, home)
        dl = ["-m", "dlengine"]
        for _ in range(2):  # the home, the bucket and the .pyc files exist
            self.plain([*dl, "download", self.new_object(), "ais://b", "--wait"], env)

        def submit(start: bool) -> int:
            job = self.work / "job.json"
            job.write_text(json.dumps({"type": "single", "bucket": {"name": "s"}, "link": self.new_object()}))
            count = self.counted([*dl, "submit", *([] if start else ["--no-start"]), str(job)], env)
            if not start:
                self.plain([*dl, "run", "--quiet"], env)  # (its job done: the next run has nothing to do)
            return count

        def run_range() -> int:
            for _ in range(RANGE):
                self.new_object()
            job = self.work / "range.json"
            template = f"{self.base_url}/o{{{self.serial - RANGE + 1}..{self.serial}}}.bin"
            job.write_text(json.dumps({"type": "range", "bucket": {"name": "r"}, "template": template}))
            self.plain([*dl, "submit", "--no-start", str(job)], env)
            return self.counted([*dl, "run", "--quiet"], env)

        return {
            "python -c pass": lambda: self.counted(["-c", "pass"], env),
            "--help": lambda: self.counted([*dl, "--help"], env),
            "run, nothing to do": lambda: self.counted([*dl, "run", "--quiet"], env),
            "download URL ais://b --wait (1 x 10 KiB)": lambda: self.counted(
                [*dl, "download", self.new_object(), "ais://b", "--wait"], env
            ),
            "submit --no-start job.json": lambda: submit(False),
            "submit job.json, + supervisor and workers": lambda: submit(True),
            f"run of a range job ({RANGE} x 10 KiB), + workers": run_range,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--python", default=sys.executable, help="the interpreter of the commands (default: this one)")
    args = parser.parse_args()
    checkouts = {n: Path(p).resolve() for n, _, p in (c.partition("=") for c in args.checkout)}
    figures: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="dlengine-instr-") as tmp:
        work = Path(tmp)
        (work / "www").mkdir()
        (work / "www").chmod(0o755)  # the nginx worker may run as another user
        (work / "www" / "probe").write_bytes(b"x")
        server = Server("auto", work / "www", work)
        server.start("/probe")
        counter = Counter(work, server.base_url, args.python)
        try:
            for name, path in checkouts.items():
                for case, measure in counter.cases(path, work / "homes" / name).items():
                    figures.setdefault(case, {})[name] = measure()
                    print(f"{name}: {case}: {figures[case][name] / 1e6:.0f} M", file=sys.stderr, flush=True)
        finally:
            server.stop()
    names = list(checkouts)
    print("| command (M instructions) | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for case, per in figures.items():
        print(f"| {case} | " + " | ".join(f"{per[n] / 1e6:.0f}" for n in names) + " |")


if __name__ == "__main__":
    main()

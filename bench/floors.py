#!/usr/bin/env python3
"""What one small object costs, layer by layer, against what a whole
``dlengine run`` spends on it (issue 12: <= 0.15 ms of CPU per 10 KiB
object; rclone ~0.13). Each layer is measured alone, in a fresh process,
through the very functions the engine calls, so the figures are floors:
what the layer costs with nothing around it.

========== ==================================================================
layer      what is measured (CPU of the measuring process per object)
========== ==================================================================
curl       libcurl's multi interface through pycurl, 32 transfers at once,
           every body kept in memory: the HTTP exchange and nothing else
store      ``layout.install_unnamed``: the object's bytes in an unnamed
           file of its directory, linked under its name (never seen half
           written); ``by name`` beside it: open(O_CREAT|O_EXCL) + writev +
           close, the system's floor for a new file of that size
ledger     ``claims.claim`` + ``claims.report`` in batches of 16: each
           object's row claimed, then recorded done with its catalog entry;
           one process alone, then two at once on one ledger (as two
           workers share it)
run        ``dlengine run --quiet`` of a range job of the same objects (a
           fresh home, submitted with ``--no-start``): its CPU per object
           split by thread, as the system names them (``dl-curl``,
           ``dl-sync``, the workers' ledger threads, the supervisor), read
           from /proc every 10 ms; beside each, its system CPU (the
           kernel's: sockets, files, the scheduler), the rest being the
           thread's own code (Python, libcurl, SQLite)
rclone     ``rclone copy --transfers 16`` of the same objects, when installed
========== ==================================================================

nginx serves the objects on 127.0.0.1; every scratch tree is set aside and
deleted after the last run (``harness/scratch.py``). Medians of ``--reps``
rounds, in a Markdown table::

    python3 bench/floors.py [--count 5000] [--size 10KiB] [--reps 3] [--python PY]

``--python``: the interpreter of the layers and the run (a fresh venv's
with pycurl, e.g. ``datapath.py --venv``'s: this box's own interpreter
has site-packages ``.pth`` hooks that cost each process ~75 ms); the
checkout is on its ``PYTHONPATH`` either way.
"""

from __future__ import annotations

import argparse
import contextlib
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datapath import (
    REPO,
    Workload,
    clean_env,
    free_port,
    generate,
    human_size,
    nginx,
    parse_size,
    timed,
    wait_http,
)

from harness.scratch import set_aside

CLK_TCK = os.sysconf("SC_CLK_TCK")
POLL = 0.01  # seconds between looks at the run's threads
BATCH = 16  # rows a claim takes and a report records (a worker's claims are 8-32)
CONCURRENCY = 32  # transfers at once in the libcurl layer (a worker's loop has 16-32)
# a run's row of its threads' system CPU (in the kernel: sockets, files, the
# scheduler), beside their total: Python glue or not is told apart by it
SYSTEM = ": of it, the system's"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------- layers (each in its own process)


def layer_curl(base: str, names: list[str]) -> dict[str, float]:
    import pycurl

    multi, free, active = pycurl.CurlMulti(), [pycurl.Curl() for _ in range(CONCURRENCY)], {}
    todo, done, failed = list(reversed(names)), 0, 0
    start = _cpu()
    while done < len(names):
        while free and todo:
            handle, body = free.pop(), []
            handle.setopt(pycurl.URL, f"{base}/{todo.pop()}")
            handle.setopt(pycurl.WRITEFUNCTION, body.append)
            active[handle] = body
            multi.add_handle(handle)
        while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
            pass
        while True:
            queued, ok, bad = multi.info_read()
            for handle in [*ok, *(b[0] for b in bad)]:
                multi.remove_handle(handle)
                handle.reset()
                free.append(handle)
                active.pop(handle)
                done += 1
            failed += len(bad)
            if not queued:
                break
        multi.select(0.1)
    if failed:
        raise RuntimeError(f"{failed} of {len(names)} transfers failed")
    return {"curl": (_cpu() - start) / len(names)}


def layer_store(root: str, names: list[str], size: int, by_name_first: bool) -> dict[str, float]:
    """(The two ways alternate which goes first: on ext4 without a journal,
    as here, the first creates after a deletion pay for skipping the freed
    inodes.)"""
    from dlengine.storage import layout

    pieces = [os.urandom(size)]

    def unnamed() -> float:
        bucket = str(Path(root) / "unnamed")
        os.makedirs(bucket)
        start = _cpu()
        for name in names:
            stored, _ = layout.install_unnamed(f"{bucket}/{name}", bucket, lambda fd: os.writev(fd, pieces) and None)
            if not stored:
                raise RuntimeError(f"{name}: not stored as an unnamed file")
        return (_cpu() - start) / len(names)

    def by_name() -> float:
        os.makedirs(Path(root) / "by-name")
        directory = os.open(Path(root) / "by-name", os.O_RDONLY | os.O_DIRECTORY)
        start = _cpu()
        for name in names:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644, dir_fd=directory)
            os.writev(fd, pieces)
            os.close(fd)
        used = (_cpu() - start) / len(names)
        os.close(directory)
        return used

    if by_name_first:
        plain = by_name()
        return {"store": unnamed(), "store by name": plain}
    return {"store": unnamed(), "store by name": by_name()}


def layer_ledger(root: str, names: list[str], processes: int) -> dict[str, float]:
    from dlengine.ledger import claims, db, jobs
    from dlengine.ledger.models import NewJob, Outcome
    from dlengine.ledger.states import ObjectState

    path = Path(root) / "ledger.db"
    conn = db.connect(path)
    record = NewJob(jobs.new_job_id(), "range", "floors", "ais", "", "b", "{}")
    jobs.create_job(conn, record, ((n, f"http://127.0.0.1/{n}") for n in names), lambda _name: root)
    with db.write(conn):
        mountpath = jobs.mountpath_ids(conn, [root])[root]
    conn.close()
    read, write = os.pipe()
    children = []
    for worker in range(processes):
        pid = os.fork()
        if pid == 0:  # a worker: claim and report until nothing is left; its CPU and rows to the pipe
            code = 1
            try:
                own = db.connect(path)
                owner, rows, start = f"floors-{worker}", 0, _cpu()
                while tasks := claims.claim(own, mountpath, owner, BATCH, 60.0, 64 << 20, sharers=processes):
                    outcomes = [Outcome(t.id, ObjectState.DONE, size=10240, etag='"e"', mountpath=root) for t in tasks]
                    claims.report(own, owner, outcomes)
                    rows += len(tasks)
                os.write(write, f"{_cpu() - start} {rows}\n".encode())
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
    os.close(write)
    for pid in children:
        os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        got = [line.split() for line in pipe]
    if len(got) != processes or sum(int(rows) for _, rows in got) != len(names):
        raise RuntimeError(f"ledger layer: {got} for {len(names)} rows")
    key = "ledger" if processes == 1 else f"ledger, {processes} processes"
    return {key: sum(float(cpu) for cpu, _ in got) / len(names)}


# ---------------------------------------------------------------- whole runs


def _threads(root: int) -> dict[tuple[int, int], tuple[str, int, int]]:
    """(pid, tid) -> (thread name, user CPU ticks, system CPU ticks) of
    ``root`` and its descendants."""
    seen: dict[tuple[int, int], tuple[str, int, int]] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    with open(f"/proc/{pid}/task/{tid}/children") as f:
                        todo += [int(c) for c in f.read().split()]
                    with open(f"/proc/{pid}/task/{tid}/stat") as f:
                        head, _, rest = f.read().rpartition(") ")
                    fields = rest.split()  # (from the state on: utime and stime are the 12th and 13th)
                    seen[(pid, int(tid))] = (head.partition(" (")[2], int(fields[11]), int(fields[12]))
    return seen


def _role(pid: int, root: int, thread: str) -> str:
    if pid == root:
        return "run: supervisor (all its threads)"
    return {
        "dl-curl": "run: dl-curl (libcurl loop, store)",
        "dl-sync": "run: dl-sync (syncfs, page drop)",
        "dlengine-worker": "run: worker ledger threads",
    }.get(thread, "run: other threads")


def _run_env(work: Path, home: Path) -> dict[str, str]:
    """A run's environment: the checkout's bytecode cached (as
    ``datapath.Bench.dl_env``'s). This machine sets PYTHONDONTWRITEBYTECODE,
    and a checkout has no ``__pycache__``: every run compiled the modules
    it imports, ~0.1-0.15 s of the supervisor's CPU (20-30 µs an object of
    5,000) that no installed copy pays."""
    env = clean_env({"DLENGINE_HOME": str(home), "PYTHONPATH": str(REPO), "PYTHONPYCACHEPREFIX": str(work / "pycache")})
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_dlengine(work: Path, base: str, count: int, width: int, python: str) -> dict[str, float]:
    home = work / f"home-{time.monotonic_ns()}"
    env = _run_env(work, home)
    job = {"type": "range", "template": f"{base}/obj-{{{1:0{width}d}..{count:0{width}d}}}.bin", "bucket": {"name": "b"}}
    (work / "job.json").write_text(json.dumps(job))
    cli = [python, "-m", "dlengine"]
    subprocess.run(
        [*cli, "submit", "--no-start", str(work / "job.json")], env=env, cwd=work, check=True, capture_output=True
    )
    os.sync()
    last: dict[tuple[int, int], tuple[str, int, int]] = {}
    proc = subprocess.Popen([*cli, "run", "--quiet"], env=env, cwd=work, stdin=subprocess.DEVNULL)
    while proc.poll() is None:
        last.update(_threads(proc.pid))
        time.sleep(POLL)
    if proc.returncode != 0:
        raise RuntimeError(f"dlengine run exited {proc.returncode}")
    split: dict[str, float] = {}
    for (pid, _tid), (thread, user, system) in last.items():
        role = _role(pid, proc.pid, thread)
        split[role] = split.get(role, 0.0) + (user + system) / CLK_TCK / count
        split[role + SYSTEM] = split.get(role + SYSTEM, 0.0) + system / CLK_TCK / count
    set_aside(home, work / "trash")
    return split


def run_rclone(work: Path, port: int, key: str, count: int) -> dict[str, float]:
    dest = work / f"rclone-{time.monotonic_ns()}"
    (work / "rclone.conf").touch()
    env = clean_env({"RCLONE_CONFIG": str(work / "rclone.conf")})
    cmd = [
        "rclone",
        "copy",
        "-q",
        "--http-url",
        f"http://127.0.0.1:{port}",
        f":http:{key}",
        str(dest),
        "--transfers",
        "16",
    ]
    sample = timed("rclone", 0, cmd, env, work / "rclone.log", quiet_wait=0.0)  # (after a sync, as datapath's)
    if not sample.ok:
        raise RuntimeError(f"rclone: {sample.note}")
    set_aside(dest, work / "trash")
    return {"rclone copy --transfers 16 (whole run)": sample.cpu / count}


# ---------------------------------------------------------------- driver


def _layer(python: str, name: str, *args: object) -> dict[str, float]:
    """One layer in a fresh interpreter (its own heap, no other threads)."""
    code = f"import json, sys; sys.path[:0] = [{str(REPO)!r}, {str(Path(__file__).parent)!r}]\n"
    code += f"import floors; print(json.dumps(floors.layer_{name}(*json.loads(sys.argv[1]))))"
    out = subprocess.run(
        [python, "-c", code, json.dumps(args)], env=clean_env(), cwd="/", capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(f"layer {name}: {out.stderr.strip()[-800:]}")
    result: dict[str, float] = json.loads(out.stdout)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=5000, help="objects (default 5000)")
    parser.add_argument("--size", type=parse_size, default=10 * 1024, help="bytes each (default 10KiB)")
    parser.add_argument("--reps", type=int, default=3, help="rounds; medians are printed (default 3)")
    parser.add_argument("--no-rclone", action="store_true", help="leave rclone out")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the layers and the run")
    args = parser.parse_args(argv)
    if not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists():
        print("floors.py: nginx is needed (it serves the objects on 127.0.0.1)", file=sys.stderr)
        return 2
    rclone = not args.no_rclone and shutil.which("rclone") is not None
    wl = Workload("floors", args.count, args.size, False, ())
    names = wl.names()
    figures: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="dlb-floors-") as scratch:
        work = Path(scratch)
        generate(work / "data", wl)
        port = free_port()
        base = f"http://127.0.0.1:{port}/{wl.key}"
        with nginx(work / "nginx", f"127.0.0.1:{port}", work / "data", "8m"):
            wait_http(f"{base}/{names[0]}")

            def scratch(name: str) -> str:
                return str(work / f"{name}-{time.monotonic_ns()}")

            py = args.python
            rounds: list[Callable[[], dict[str, float]]] = [
                lambda: _layer(py, "curl", base, names),
                lambda: _layer(py, "store", scratch("store"), names, args.size, rep % 2 == 1),
                lambda: _layer(py, "ledger", scratch("ledger"), names, 1),
                lambda: _layer(py, "ledger", scratch("ledger"), names, 2),
                lambda: run_dlengine(work, base, args.count, wl.width, args.python),
            ]
            if rclone:
                rounds.append(lambda: run_rclone(work, port, wl.key, args.count))
            run_dlengine(work, base, min(10, args.count), wl.width, py)  # (untimed: fills the bytecode cache)
            for rep in range(args.reps):  # (``rep`` is read by the store layer's lambda)
                for measure in rounds:
                    for key, value in measure().items():
                        figures.setdefault(key, []).append(value)
                print(f"round {rep + 1} of {args.reps} done", file=sys.stderr)
        shutil.rmtree(work / "trash", ignore_errors=True)
    print(f"{args.count:,} x {human_size(args.size)}, medians of {args.reps} rounds, CPU per object:\n")
    print("| layer | µs CPU per object | rounds |")
    print("|---|---:|---|")
    for key, values in figures.items():
        rounds_text = ", ".join(f"{v * 1e6:.0f}" for v in values)
        print(f"| {key} | {statistics.median(values) * 1e6:.0f} | {rounds_text} |")
    run_total = sum(statistics.median(v) for k, v in figures.items() if k.startswith("run: ") and SYSTEM not in k)
    print(f"| run: all threads | {run_total * 1e6:.0f} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Benchmark dlengine against rclone, aria2c and wget on a local HTTP server.

What it measures (every figure: median of ``--repeat`` runs, wall time from
process start to process exit):

* ``small``: N x S objects (default 10,000 x 10 KiB): objects/s and MB/s.
* ``large``: N x S objects (default 4 x 256 MiB): objects/s and MB/s.
* ``submit``: time and peak RSS of ``dlengine download`` enqueuing a range job
  of ``--submit-count`` objects (default 1,000,000) with ``--no-start``.

dlengine runs in a fresh ``DLENGINE_HOME`` per run: the job is submitted with
``--no-start`` (not timed), then ``dlengine run`` (the foreground supervisor,
which exits when the job is done) is timed.  It runs twice per repetition:
with the default durability (``DLENGINE_FSYNC=1``) and without
(``DLENGINE_FSYNC=0``), to show what durability costs.  Every dlengine run is
verified: the object count via ``dlengine ls BUCKET --json`` and ``dlengine
show ID --json``, and a few objects byte for byte against the source.  Peer
outputs are checked by count and size.

Peers, when installed: ``rclone copy --transfers 16`` (from an ``:http:``
remote; default multi-thread settings for large objects), ``aria2c -i LIST -j
16`` (plus ``-x 4 -s 4`` for large objects), ``wget -i LIST`` (sequential,
one keep-alive connection; ``--wget-max`` caps the object count).

The data is served on 127.0.0.1 by nginx when installed (config, logs and
temp paths all in the work directory, so it runs as root without touching
/etc or /var), else by ``harness/httpd.py --root DIR --port P``, else by
``python3 -m http.server``.  No traffic leaves 127.0.0.1 (proxy variables
are removed from every child's environment).

Each run waits (``--quiet-wait``) for the machine to be mostly idle and
records the CPU the server and the rest of the machine used meanwhile, so a
measurement disturbed by other work shows as such.

When a target is missed (or with ``--profile always``) it profiles
dlengine: py-spy on ``dlengine run`` (all processes; wall-clock and
``--gil``), ``strace -c`` syscall counts, and cProfile on the submit, and
puts the top hot spots in the results file.

Results go to ``bench/RESULTS.md`` (between generated-section markers;
text outside them is kept) and to stdout.

Usage (from the repository root)::

    python3 bench/bench.py                      # full run (~6-8 min on 2 cores)
    python3 bench/bench.py --only small --repeat 1 --skip-peers
    python3 bench/bench.py --small 2000 --large 2 --large-size 64MiB --submit-count 100000
    python3 bench/bench.py --workdir /var/tmp/dlb --keep   # reuse the data set next time
    python3 bench/bench.py --dlengine-env DLENGINE_THREADS=32   # try a knob

Install the peers and the server with
``apt-get install -y nginx-light rclone aria2 wget time strace`` and the
profiler with ``pip install py-spy``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import http.client
import json
import os
import platform
import pstats
import random
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = REPO / "bench" / "RESULTS.md"
MB = 1_000_000
CHUNK = 1 << 20
BEGIN_MARK = "<!-- bench.py: generated section begins; edits inside are overwritten -->"
END_MARK = "<!-- bench.py: generated section ends -->"
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy", "no_proxy")
SCENARIOS = ("small", "large", "submit")
STRACE_OBJECTS = 2000  # objects in the strace run
RUN_TIMEOUT = 900.0  # seconds; a hung run is killed and reported as failed

# targets (from the issue)
SMALL_RATIO_GOAL = 0.5  # dlengine objects/s vs rclone's, 10k x 10 KiB
LARGE_RATIO_GOAL = 0.8  # dlengine MB/s vs rclone's, 4 x 256 MiB
SUBMIT_SECONDS_GOAL = 5.0
SUBMIT_RSS_MB_GOAL = 150.0


# ---------------------------------------------------------------- helpers


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``10KiB`` -> 10240, ``1MB`` -> 1000000, ``4096`` -> 4096."""
    m = _SIZE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 10KiB, 256MiB, 1GB)")
    number, unit, binary = float(m.group(1)), m.group(2).lower(), bool(m.group(3))
    power = "kmgt".index(unit) + 1 if unit else 0
    return int(number * (1024 if binary else 1000) ** power)


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" or n == int(n) else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} TiB"  # unreachable


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def setting(text: str) -> tuple[str, str]:
    """A ``--env`` argument: ``DLENGINE_THREADS=64`` -> ("DLENGINE_THREADS", "64")."""
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("DLENGINE_"):
        raise argparse.ArgumentTypeError(f"not DLENGINE_NAME=VALUE: {text!r}")
    return name, value


def add_settings(parser: argparse.ArgumentParser) -> None:
    """``--env DLENGINE_NAME=VALUE`` (repeatable): dlengine settings of a
    benchmark's dlengine runs, whose environment has no DLENGINE_* of ours."""
    parser.add_argument(
        "--env",
        type=setting,
        action="append",
        default=[],
        metavar="DLENGINE_NAME=VALUE",
        help="a dlengine setting of its runs, e.g. DLENGINE_THREADS=64 (repeatable; the environment's"
        " DLENGINE_* are not passed on)",
    )


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every child: no proxies, no inherited DLENGINE_* knobs."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in PROXY_VARS and not k.startswith("DLENGINE_") and not k.startswith("RCLONE_")
    }
    env["no_proxy"] = env["NO_PROXY"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


def first_line(cmd: Sequence[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=clean_env())
    except (OSError, subprocess.SubprocessError):
        return "?"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0].strip() if text else "?"


def find_tool(name: str, *extra_paths: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for path in extra_paths:
        if os.access(path, os.X_OK):
            return path
    return None


def dlengine_cmd() -> list[str]:
    exe = shutil.which("dlengine")
    return [exe] if exe else [sys.executable, "-m", "dlengine"]


def flush_dirty_pages() -> None:
    """Flush dirty pages so one run's writeback does not slow the next."""
    os.sync()


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def parse_iso(ts: str | None) -> float | None:
    if not ts:
        return None
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


# ---------------------------------------------------------------- measuring


@dataclass
class Sample:
    """One timed run of one tool."""

    wall: float
    cpu: float  # user + system of the process and its waited-for children
    maxrss_mb: float  # largest single process of the tree
    rc: int
    ok: bool = True
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def timed(cmd: Sequence[str], env: dict[str, str], logfile: Path, timeout: float = RUN_TIMEOUT) -> Sample:
    """Run ``cmd``; wall time, CPU time and peak RSS from wait4()."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as out:
        out.write(f"$ {shlex.join(cmd)}\n".encode())
        out.flush()
        start, epoch = time.perf_counter(), time.time()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
    rc = os.waitstatus_to_exitcode(status)
    proc.returncode = rc  # already reaped; keep Popen from waiting again
    sample = Sample(wall=wall, cpu=usage.ru_utime + usage.ru_stime, maxrss_mb=usage.ru_maxrss / 1024, rc=rc)
    sample.extra["t_start"], sample.extra["t_end"] = epoch, epoch + wall
    if rc != 0:
        sample.ok = False
        sample.note = f"exit {rc}; see {logfile}: {tail(logfile)}"
    return sample


CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds (all cores) spent not idle since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values) - idle) / CLK_TCK


def tree_cpu(pid: int) -> float:
    """CPU seconds of a live process and its live descendants (all their threads)."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


def wait_quiet(max_wait: float, threshold: float = 0.25) -> float:
    """Wait (at most ``max_wait`` s) until the machine is mostly idle; returns
    the busy fraction of all cores over the last half second."""
    deadline = time.monotonic() + max_wait
    cores = os.cpu_count() or 1
    while True:
        b0, t0 = machine_busy(), time.monotonic()
        time.sleep(0.5)
        busy = (machine_busy() - b0) / ((time.monotonic() - t0) * cores)
        if busy < threshold or time.monotonic() >= deadline:
            return busy


def tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])[-400:]


# ---------------------------------------------------------------- data set


@dataclass(frozen=True)
class Dataset:
    root: Path  # the document root of the server
    small_n: int
    small_size: int
    large_n: int
    large_size: int

    @property
    def small_width(self) -> int:
        return max(5, len(str(self.small_n)))

    @property
    def large_width(self) -> int:
        return len(str(self.large_n))

    def names(self, scenario: str) -> list[str]:
        n, width = (self.small_n, self.small_width) if scenario == "small" else (self.large_n, self.large_width)
        return [f"obj-{i:0{width}d}.bin" for i in range(1, n + 1)]

    def count(self, scenario: str) -> int:
        return self.small_n if scenario == "small" else self.large_n

    def size(self, scenario: str) -> int:
        return self.small_size if scenario == "small" else self.large_size

    def template(self, base_url: str, scenario: str, limit: int | None = None) -> str:
        n, width = (self.small_n, self.small_width) if scenario == "small" else (self.large_n, self.large_width)
        n = min(n, limit or n)
        return f"{base_url}/{scenario}/obj-{{{1:0{width}d}..{n:0{width}d}}}.bin"

    def source(self, scenario: str, name: str) -> Path:
        return self.root / scenario / name


def generate(ds: Dataset, scenarios: Iterable[str]) -> None:
    """Write the objects (random bytes); keep files that already have the right size."""
    for scenario in scenarios:
        if scenario == "submit":
            continue
        directory = ds.root / scenario
        directory.mkdir(parents=True, exist_ok=True)
        size = ds.size(scenario)
        wanted = set(ds.names(scenario))
        for entry in os.scandir(directory):  # stale objects would show up in rclone's listing
            if entry.name not in wanted:
                os.unlink(entry.path)
        made = 0
        start = time.perf_counter()
        for name in sorted(wanted):
            path = directory / name
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_size == size:
                    continue
            with open(path, "wb") as f:
                remaining = size
                while remaining > 0:
                    piece = min(remaining, CHUNK)
                    f.write(os.urandom(piece))
                    remaining -= piece
            made += 1
        log(
            f"data set {scenario}: {len(wanted)} x {human_size(size)} ({made} written in "
            f"{time.perf_counter() - start:.1f}s) under {directory}"
        )
    for path in [ds.root, *ds.root.iterdir()]:
        path.chmod(0o755)  # the nginx worker may run as another user


# ---------------------------------------------------------------- servers


class Server:
    """nginx, harness/httpd.py or http.server on 127.0.0.1, serving ``root``."""

    def __init__(self, kind: str, root: Path, workdir: Path) -> None:
        self.root = root
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.kind = self._choose(kind)
        self.version = ""
        self.listing = False  # does GET /dir/ list the directory (for rclone)?
        self.limit_rate = ""  # nginx's per-connection cap on every answer (e.g. "8m"), "" for none

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    def _nginx() -> str | None:
        return find_tool("nginx", "/usr/sbin/nginx")

    @staticmethod
    def _httpd() -> Path | None:
        path = REPO / "harness" / "httpd.py"
        try:
            text = path.read_text()
        except OSError:
            return None
        return path if '"--root"' in text and '"--port"' in text else None

    def _choose(self, kind: str) -> str:
        if kind == "auto":
            if self._nginx():
                return "nginx"
            return "httpd" if self._httpd() else "python"
        if kind == "nginx" and not self._nginx():
            raise SystemExit("bench: --server nginx, but nginx is not installed")
        if kind == "httpd" and not self._httpd():
            raise SystemExit("bench: --server httpd, but harness/httpd.py has no --root/--port mode")
        return kind

    def start(self, probe: str) -> None:
        """Start and wait until ``probe`` (a path) answers 200."""
        logfile = open(self.workdir / f"server-{self.kind}.log", "ab")  # noqa: SIM115 - lives as long as the server
        if self.kind == "nginx":
            nginx = self._nginx()
            assert nginx
            conf = self._nginx_conf(nginx)
            cmd = [
                nginx,
                "-p",
                str(self.workdir / "nginx"),
                "-e",
                str(self.workdir / "nginx" / "error.log"),
                "-c",
                str(conf),
            ]
            self.version = first_line([nginx, "-v"])
        elif self.kind == "httpd":
            cmd = [sys.executable, str(self._httpd()), "--root", str(self.root), "--port", str(self.port)]
            self.version = "harness/httpd.py (threaded, sendfile)"
        else:
            cmd = [
                sys.executable,
                "-m",
                "http.server",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--directory",
                str(self.root),
            ]
            self.version = f"python3 -m http.server ({platform.python_version()})"
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logfile, stderr=logfile, env=clean_env())
        logfile.close()
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"bench: {self.kind} exited at start; see {logfile.name}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self.get(probe, head=True)[0] == 200:
                    break
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"bench: {self.kind} did not answer on {self.base_url}{probe}")
            time.sleep(0.05)
        directory = probe.rsplit("/", 1)[0] + "/"
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, body = self.get(directory)
            self.listing = status == 200 and b"obj-" in body
        log(f"server: {self.version} on {self.base_url} (directory listing: {self.listing})")

    def get(self, path: str, head: bool = False) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("HEAD" if head else "GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def _nginx_conf(self, nginx: str) -> Path:
        base = self.workdir / "nginx"
        base.mkdir(parents=True, exist_ok=True)
        built = subprocess.run([nginx, "-V"], capture_output=True, text=True, env=clean_env()).stderr
        temps = [("client_body_temp_path", "client_body")]
        for module in ("proxy", "fastcgi", "uwsgi", "scgi"):  # only modules compiled in
            if f"--without-http_{module}_module" not in built:
                temps.append((f"{module}_temp_path", module))
        temp_lines = "\n".join(f"    {d} {base / sub};" for d, sub in temps)
        user = "user root root;\n" if os.geteuid() == 0 else ""  # workers must read a 0700 temp dir
        text = f"""{user}daemon off;
worker_processes 1;
pid {base / "nginx.pid"};
error_log {base / "error.log"};
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    keepalive_requests 100000;
    keepalive_timeout 120s;
    default_type application/octet-stream;
{temp_lines}
    server {{
        listen 127.0.0.1:{self.port};
        root {self.root};
        autoindex on;{f"{chr(10)}        limit_rate {self.limit_rate};" if self.limit_rate else ""}
    }}
}}
"""
        conf = base / "nginx.conf"
        conf.write_text(text)
        return conf

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM if self.kind == "nginx" else signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# ---------------------------------------------------------------- contexts


@dataclass
class Context:
    args: argparse.Namespace
    workdir: Path
    ds: Dataset
    server: Server
    dlengine: list[str]
    tools: dict[str, str | None]
    dl_env: dict[str, str]  # --dlengine-env extras

    def dl_env_for(self, home: Path, fsync: bool) -> dict[str, str]:
        env = clean_env({**self.dl_env, "DLENGINE_HOME": str(home), "DLENGINE_FSYNC": "1" if fsync else "0"})
        # Cache bytecode (as any installed package does) in the work directory,
        # so every spawned worker does not compile dlengine from source again.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(self.workdir / "pycache")
        return env

    def measure(self, cmd: Sequence[str], env: dict[str, str], logfile: Path) -> Sample:
        """``timed``, after waiting for a quiet machine, plus the CPU that the
        server and everything else on the machine used meanwhile."""
        busy_before = wait_quiet(self.args.quiet_wait) if self.args.quiet_wait > 0 else None
        server = self.server.proc.pid if self.server.proc else None
        m0, s0 = machine_busy(), tree_cpu(server) if server else 0.0
        sample = timed(cmd, env, logfile)
        server_cpu = (tree_cpu(server) - s0) if server else 0.0
        sample.extra["server_cpu"] = server_cpu
        sample.extra["other_cpu"] = max(0.0, machine_busy() - m0 - sample.cpu - server_cpu)
        if busy_before is not None:
            sample.extra["busy_before"] = busy_before
        return sample

    def fresh_dir(self, *parts: str) -> Path:
        path = self.workdir.joinpath(*parts)
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def url_list(self, scenario: str, limit: int | None = None) -> Path:
        names = self.ds.names(scenario)[:limit]
        path = self.workdir / "lists" / f"{scenario}-{len(names)}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{self.server.base_url}/{scenario}/{n}\n" for n in names))
        return path

    def name_list(self, scenario: str) -> Path:
        path = self.workdir / "lists" / f"{scenario}-names.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(n + "\n" for n in self.ds.names(scenario)))
        return path


def run_cli(ctx: Context, env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ctx.dlengine, *args], capture_output=True, text=True, env=env, timeout=timeout)


def submit_job(ctx: Context, env: dict[str, str], scenario: str, bucket: str, limit: int | None = None) -> str:
    out = run_cli(ctx, env, "download", ctx.ds.template(ctx.server.base_url, scenario, limit), bucket, "--no-start")
    if out.returncode != 0:
        raise RuntimeError(f"dlengine download failed ({out.returncode}): {out.stderr.strip()[-400:]}")
    return out.stdout.strip().splitlines()[-1]


# ---------------------------------------------------------------- verification


def compare_files(a: Path, b: Path, sample: bool) -> bool:
    """Byte-for-byte; with ``sample``, only the first, a middle and the last MiB."""
    size = a.stat().st_size
    if b.stat().st_size != size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        if not sample or size <= 3 * CHUNK:
            while True:
                x, y = fa.read(CHUNK), fb.read(CHUNK)
                if x != y:
                    return False
                if not x:
                    return True
        for offset in (0, (size // 2) & ~(CHUNK - 1), size - CHUNK):
            fa.seek(offset)
            fb.seek(offset)
            if fa.read(CHUNK) != fb.read(CHUNK):
                return False
    return True


def verify_dlengine(
    ctx: Context, env: dict[str, str], home: Path, scenario: str, job_id: str, rep: int, run: Sample
) -> tuple[bool, str, dict[str, Any]]:
    ds = ctx.ds
    n, size = ds.count(scenario), ds.size(scenario)
    extra: dict[str, Any] = {}
    out = run_cli(ctx, env, "ls", "ais://bench", "--json")
    if out.returncode != 0:
        return False, f"dlengine ls failed: {out.stderr.strip()[-300:]}", extra
    listing = json.loads(out.stdout)
    bad = [e for e in listing if e.get("size") != size]
    if len(listing) != n or bad:
        return False, f"ls: {len(listing)} objects (want {n}), {len(bad)} with a wrong size", extra
    out = run_cli(ctx, env, "show", job_id, "--json")
    if out.returncode == 0:
        status = json.loads(out.stdout)
        start, end = parse_iso(status.get("started_time")), parse_iso(status.get("finished_time"))
        if start and end:
            extra["job_span"] = end - start  # first claim to finish, inside the run
            extra["startup"] = start - run.extra["t_start"]  # process start to first claim
            extra["shutdown"] = run.extra["t_end"] - end  # job finished to process exit
        if status.get("error_cnt") or status.get("done_cnt") != n:
            return False, f"show: done {status.get('done_cnt')}/{n}, errors {status.get('error_cnt')}", extra
    names = ds.names(scenario)
    rng = random.Random(1000 + rep)
    picks = sorted({names[0], names[-1], *rng.sample(names, min(3, len(names)))})
    for i, name in enumerate(picks):
        stored = home / "data" / "ais" / "bench" / name
        if not stored.exists() or not compare_files(ds.source(scenario, name), stored, sample=i > 0):
            return False, f"spot check: {name} differs from the source", extra
    extra["spot_checked"] = len(picks)
    return True, "", extra


def verify_dir(ds: Dataset, scenario: str, dest: Path, names: Sequence[str]) -> tuple[bool, str]:
    size = ds.size(scenario)
    found = {e.name: e.stat().st_size for e in os.scandir(dest) if e.is_file()} if dest.exists() else {}
    missing = [n for n in names if n not in found]
    wrong = [n for n in names if n in found and found[n] != size]
    if missing or wrong:
        return False, f"{len(missing)} missing, {len(wrong)} with a wrong size (of {len(names)})"
    if not compare_files(ds.source(scenario, names[-1]), dest / names[-1], sample=True):
        return False, f"{names[-1]} differs from the source"
    return True, ""


# ---------------------------------------------------------------- the runs


@dataclass
class Row:
    scenario: str
    tool: str
    settings: str
    objects: int
    nbytes: int
    fsync: bool | None = None  # dlengine rows only
    samples: list[Sample] = field(default_factory=list)

    @property
    def good(self) -> list[Sample]:
        return [s for s in self.samples if s.ok]

    @property
    def wall(self) -> float | None:
        return median(s.wall for s in self.good) if self.good else None

    @property
    def best_wall(self) -> float | None:
        return min(s.wall for s in self.good) if self.good else None

    @property
    def objects_per_s(self) -> float | None:
        wall = self.wall
        return self.objects / wall if wall else None

    @property
    def mb_per_s(self) -> float | None:
        wall = self.wall
        return self.nbytes / MB / wall if wall else None

    @property
    def cpu(self) -> float | None:
        return median(s.cpu for s in self.good) if self.good else None

    def extra_median(self, key: str) -> float | None:
        values = [s.extra[key] for s in self.good if key in s.extra]
        return median(values) if values else None

    @property
    def maxrss(self) -> float | None:
        return max(s.maxrss_mb for s in self.good) if self.good else None

    @property
    def failures(self) -> list[str]:
        return [s.note for s in self.samples if not s.ok]


def run_dlengine(ctx: Context, scenario: str, fsync: bool, rep: int) -> Sample:
    home = ctx.fresh_dir("runs", f"{scenario}-dlengine-fsync{int(fsync)}-{rep}")
    env = ctx.dl_env_for(home, fsync)
    job_id = submit_job(ctx, env, scenario, "ais://bench")
    flush_dirty_pages()
    sample = ctx.measure([*ctx.dlengine, "run", "--quiet"], env, home / "bench-run.log")
    if sample.ok:
        ok, note, extra = verify_dlengine(ctx, env, home, scenario, job_id, rep, sample)
        sample.ok, sample.note = ok, note
        sample.extra.update(extra)
    if scenario == "large":
        shutil.rmtree(home / "data", ignore_errors=True)  # 4 files: cheap to drop, large to keep
    return sample


def run_peer(ctx: Context, tool: str, scenario: str, rep: int) -> Sample:
    dest = ctx.fresh_dir("runs", f"{scenario}-{tool}-{rep}", "out")
    logfile = dest.parent / "run.log"
    names = ctx.ds.names(scenario)
    env = clean_env()
    exe = ctx.tools[tool]
    assert exe
    if tool == "rclone":
        conf = ctx.workdir / "rclone.conf"
        conf.touch()
        env["RCLONE_CONFIG"] = str(conf)
        cmd = [
            exe,
            "copy",
            "-q",
            "--http-url",
            ctx.server.base_url,
            f":http:{scenario}",
            str(dest),
            "--transfers",
            "16",
        ]
        if not ctx.server.listing:
            cmd += ["--files-from", str(ctx.name_list(scenario)), "--no-traverse"]
    elif tool == "aria2c":
        cmd = [
            exe,
            "-q",
            "-i",
            str(ctx.url_list(scenario)),
            "-d",
            str(dest),
            "-j",
            "16",
            "--file-allocation=none",
            "--allow-overwrite=true",
            "--auto-file-renaming=false",
            "--summary-interval=0",
            "--deferred-input=true",
        ]
        if scenario == "large":
            cmd += ["-x", "4", "-s", "4"]
    elif tool == "wget":
        cap = ctx.args.wget_max or None
        names = names[:cap]
        cmd = [exe, "-q", "-i", str(ctx.url_list(scenario, cap)), "-P", str(dest)]
    else:
        raise ValueError(tool)
    flush_dirty_pages()
    sample = ctx.measure(cmd, env, logfile)
    if sample.ok:
        sample.ok, sample.note = verify_dir(ctx.ds, scenario, dest, names)
    if scenario == "large":
        shutil.rmtree(dest, ignore_errors=True)
    return sample


PEER_SETTINGS = {
    ("rclone", "small"): "copy --transfers 16",
    ("rclone", "large"): "copy --transfers 16 (default multi-thread)",
    ("aria2c", "small"): "-i list -j 16",
    ("aria2c", "large"): "-i list -j 16 -x 4 -s 4",
    ("wget", "small"): "-i list (sequential)",
    ("wget", "large"): "-i list (sequential)",
}


def throughput(ctx: Context, scenario: str) -> list[Row]:
    ds = ctx.ds
    n, size = ds.count(scenario), ds.size(scenario)
    rows: dict[str, Row] = {}
    runners: list[tuple[str, Callable[[int], Sample]]] = []
    extra = " ".join(f"{k}={v}" for k, v in ctx.dl_env.items())
    for fsync in (True, False):
        key = f"dlengine-fsync{int(fsync)}"
        rows[key] = Row(scenario, "dlengine", f"DLENGINE_FSYNC={int(fsync)} {extra}".strip(), n, n * size, fsync)
        runners.append((key, functools.partial(run_dlengine, ctx, scenario, fsync)))
    if not ctx.args.skip_peers:
        for tool in ("rclone", "aria2c", "wget"):
            if not ctx.tools.get(tool):
                continue
            count = min(n, ctx.args.wget_max) if tool == "wget" and ctx.args.wget_max else n
            settings = PEER_SETTINGS[(tool, scenario)]
            if tool == "wget" and count < n:
                settings += f", first {count} only"
            if tool == "rclone" and not ctx.server.listing:
                settings += " --files-from --no-traverse"
            rows[tool] = Row(scenario, tool, settings, count, count * size)
            runners.append((tool, functools.partial(run_peer, ctx, tool, scenario)))
    for rep in range(ctx.args.repeat):
        shift = rep % len(runners)  # rotate the order: no tool always runs first
        for key, runner in runners[shift:] + runners[:shift]:
            try:
                sample = runner(rep)
            except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as exc:
                sample = Sample(wall=0.0, cpu=0.0, maxrss_mb=0.0, rc=-1, ok=False, note=str(exc))
            rows[key].samples.append(sample)
            row = rows[key]
            rate = (
                f"{row.objects / sample.wall:,.0f} obj/s, {row.nbytes / MB / sample.wall:,.1f} MB/s"
                if sample.wall
                else ""
            )
            status = "ok" if sample.ok else f"FAILED: {sample.note}"
            where = f"{scenario} rep {rep + 1}/{ctx.args.repeat} {row.tool} [{row.settings}]"
            log(f"{where}: {sample.wall:.2f}s {rate} {status}")
    return list(rows.values())


@dataclass
class SubmitResult:
    objects: int
    walls: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    ledger_mb: float = 0.0
    method: str = ""
    failures: list[str] = field(default_factory=list)

    @property
    def wall(self) -> float | None:
        return median(self.walls) if self.walls else None

    @property
    def rss(self) -> float | None:
        return max(self.rss_mb) if self.rss_mb else None


def submit_template(count: int) -> str:
    width = max(7, len(str(count)))
    return f"http://127.0.0.1:1/x/obj-{{{1:0{width}d}..{count:0{width}d}}}.bin"


def submit_bench(ctx: Context) -> SubmitResult:
    count = ctx.args.submit_count
    result = SubmitResult(count)
    gnu_time = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
    result.method = "/usr/bin/time -v" if gnu_time else "wait4() rusage"
    for rep in range(ctx.args.repeat):
        home = ctx.fresh_dir("runs", f"submit-{rep}")
        env = ctx.dl_env_for(home, True)
        cmd = [*ctx.dlengine, "download", submit_template(count), "ais://big", "--no-start"]
        logfile = home / "bench-submit.log"
        flush_dirty_pages()
        sample = ctx.measure([gnu_time, "-v", *cmd] if gnu_time else cmd, env, logfile)
        rss = sample.maxrss_mb
        if gnu_time:
            m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", logfile.read_text(errors="replace"))
            if m:
                rss = int(m.group(1)) / 1024
        if not sample.ok:
            result.failures.append(sample.note)
            log(f"submit rep {rep + 1}: FAILED {sample.note}")
            continue
        ids = re.findall(r"^(dnl-\S+)$", logfile.read_text(errors="replace"), re.MULTILINE)
        out = run_cli(ctx, env, "show", ids[-1], "--json") if ids else None
        total = json.loads(out.stdout).get("total") if out is not None and out.returncode == 0 else None
        if total != count:
            result.failures.append(f"job has {total} objects, want {count}")
            log(f"submit rep {rep + 1}: FAILED job has {total} objects")
            continue
        result.walls.append(sample.wall)
        result.rss_mb.append(rss)
        result.ledger_mb = sum(p.stat().st_size for p in home.glob("ledger.db*")) / MB
        log(f"submit rep {rep + 1}/{ctx.args.repeat}: {count:,} objects in {sample.wall:.2f}s, peak RSS {rss:.0f} MB")
        shutil.rmtree(home, ignore_errors=True)
    return result


# ---------------------------------------------------------------- profiling


_PROCESS_FRAME = re.compile(r'process \d+:"[^"]*";?')
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


@dataclass
class Profile:
    title: str
    command: str
    lines: list[str] = field(default_factory=list)  # markdown


def _frame_parts(frame: str) -> tuple[str, str]:
    """(function with file, function with file:line)."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip(), frame.strip()
    func, file, line = m.group("func"), m.group("file"), m.group("line")
    return f"{func} ({file})", f"{func} ({file}:{line})" if line else f"{func} ({file})"


def summarize_pyspy(raw: Path, top: int, gil: bool = False) -> list[str]:
    """Markdown tables from py-spy's raw (collapsed-stack) output."""
    total = 0
    by_process: Counter[str] = Counter()
    self_lines: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for text in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = text.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        processes = len(_PROCESS_FRAME.findall(stack))
        frames = [f for f in _PROCESS_FRAME.sub("", stack).split(";") if f.strip()]
        if processes > 1:
            thread = "download threads" if any("concurrent/futures/thread.py" in f for f in frames) else "main thread"
            by_process[f"worker processes, {thread}"] += count
        else:
            by_process["supervisor process"] += count
        if frames:
            self_lines[_frame_parts(frames[-1])[1]] += count
        for name in {_frame_parts(f)[0] for f in frames if "dlengine/" in f}:
            inclusive[name] += count
    if not total:
        return ["(py-spy recorded no samples)"]

    def pct(n: int) -> str:
        return f"{100 * n / total:.1f}%"

    what = (
        "samples of the thread holding the GIL (where Python CPU time goes)"
        if gil
        else "samples of non-idle threads (wall-clock sampling; waiting in a syscall or for the GIL counts)"
    )
    out = [f"{total:,} {what}.", ""]
    out += ["| where | share |", "|---|---:|"]
    out += [f"| {k} | {pct(v)} |" for k, v in by_process.most_common()]
    out += ["", f"Top {top} lines by own samples:", "", "| share | function (file:line) |", "|---:|---|"]
    out += [f"| {pct(v)} | `{k}` |" for k, v in self_lines.most_common(top)]
    out += ["", f"Top {top} dlengine functions by inclusive samples:", "", "| share | function (file) |", "|---:|---|"]
    out += [f"| {pct(v)} | `{k}` |" for k, v in inclusive.most_common(top)]
    return out


def summarize_strace(path: Path, objects: int, top: int) -> list[str]:
    rows: list[tuple[int, str, float]] = []
    for text in path.read_text(errors="replace").splitlines():
        parts = text.split()
        if len(parts) in (5, 6) and parts[0].replace(".", "").isdigit() and parts[-1] != "total":
            calls = int(parts[3])
            rows.append((calls, parts[-1], float(parts[1])))
    if not rows:
        return ["(strace produced no table)"]
    rows.sort(reverse=True)
    total = sum(r[0] for r in rows)
    out = [f"{total:,} system calls in all processes, {total / max(1, objects):,.0f} per object.", ""]
    out += ["| syscall | calls | per object | time s (under strace) |", "|---|---:|---:|---:|"]
    out += [f"| {name} | {calls:,} | {calls / max(1, objects):,.1f} | {secs:.2f} |" for calls, name, secs in rows[:top]]
    return out


PROFILERS = {"py-spy": "py-spy", "py-spy-gil": "py-spy", "strace": "strace"}


def profile_run(ctx: Context, scenario: str, tool: str) -> Profile:
    """py-spy (wall or ``--gil``) or strace on one `dlengine run` of ``scenario`` (fsync on)."""
    home = ctx.fresh_dir("runs", f"profile-{tool}-{scenario}")
    env = ctx.dl_env_for(home, True)
    # strace slows futex-heavy code ~10x: a sample of the objects is enough for per-object counts
    objects = min(ctx.ds.count(scenario), STRACE_OBJECTS) if tool == "strace" else ctx.ds.count(scenario)
    submit_job(ctx, env, scenario, "ais://bench", objects)
    run = [*ctx.dlengine, "run", "--quiet"]
    exe = ctx.tools[PROFILERS[tool]]
    assert exe
    out = home / f"{tool}.txt"
    if tool.startswith("py-spy"):
        cmd = [exe, "record", "--format", "raw", "-o", str(out), "--subprocesses", "--rate", "100", "--nonblocking"]
        cmd += ["--gil"] if tool == "py-spy-gil" else []
        cmd += ["--", *run]
    else:
        cmd = [exe, "-f", "-c", "-o", str(out), "--", *run]
    flush_dirty_pages()
    sample = timed(cmd, env, home / "profile.log")
    shown = shlex.join([Path(cmd[0]).name, *cmd[1:]]).replace(str(ctx.workdir), "$WORK")
    size = human_size(ctx.ds.size(scenario))
    prof = Profile(f"{tool} on `dlengine run`, {scenario} ({objects:,} x {size})", shown)
    if not out.exists():
        prof.lines = [f"({tool} failed: {sample.note or tail(home / 'profile.log')})"]
        return prof
    prof.lines = [f"Run took {sample.wall:.1f}s under {tool} (CPU {sample.cpu:.1f}s).", ""]
    if tool.startswith("py-spy"):
        prof.lines += summarize_pyspy(out, ctx.args.top, gil=tool == "py-spy-gil")
    else:
        prof.lines += summarize_strace(out, objects, ctx.args.top)
    if scenario == "large":
        shutil.rmtree(home / "data", ignore_errors=True)
    return prof


def profile_submit(ctx: Context) -> Profile:
    home = ctx.fresh_dir("runs", "profile-submit")
    env = ctx.dl_env_for(home, True)
    stats = home / "submit.prof"
    cmd = [
        sys.executable,
        "-m",
        "cProfile",
        "-o",
        str(stats),
        "-m",
        "dlengine",
        "download",
        submit_template(ctx.args.submit_count),
        "ais://big",
        "--no-start",
    ]
    sample = timed(cmd, env, home / "profile.log")
    prof = Profile(
        f"cProfile on the submit of {ctx.args.submit_count:,} objects",
        shlex.join(["python3", *cmd[1:]]).replace(str(ctx.workdir), "$WORK"),
    )
    if not stats.exists():
        prof.lines = [f"(cProfile failed: {sample.note})"]
        return prof
    st = pstats.Stats(str(stats))
    entries: list[tuple[float, float, int, str]] = []
    total = 0.0
    for (file, line, func), (_cc, ncalls, tottime, cumtime, _callers) in st.stats.items():  # type: ignore[attr-defined]
        total += tottime
        short = re.sub(r"^.*/(?=dlengine/)|^.*/(site-packages|lib/python3\.\d+)/", "", file)
        entries.append((tottime, cumtime, ncalls, f"{func} ({short}:{line})" if line else func))
    entries.sort(reverse=True)
    prof.lines = [
        f"Profiled run: {sample.wall:.1f}s (cProfile inflates Python-heavy code ~1.5x).",
        "",
        "| own s | share | cumulative s | calls | function |",
        "|---:|---:|---:|---:|---|",
    ]
    for tottime, cumtime, ncalls, name in entries[: ctx.args.top]:
        prof.lines.append(f"| {tottime:.2f} | {100 * tottime / total:.0f}% | {cumtime:.2f} | {ncalls:,} | `{name}` |")
    shutil.rmtree(home / "data", ignore_errors=True)
    return prof


# ---------------------------------------------------------------- reporting


def fmt(value: float | None, spec: str = ",.1f") -> str:
    return "-" if value is None else format(value, spec)


def job_span(row: Row) -> str | None:
    """'span s (startup s + shutdown s)' of the median run."""
    spans = [s for s in row.good if "job_span" in s.extra]
    if not spans:
        return None
    middle = sorted(spans, key=lambda s: s.wall)[len(spans) // 2]
    return (
        f"{middle.extra['job_span']:.2f}s (+ {middle.extra['startup']:.2f}s before the first claim, "
        f"{middle.extra['shutdown']:.2f}s after the job finished)"
    )


def rclone_row(rows: list[Row], scenario: str) -> Row | None:
    return next((r for r in rows if r.scenario == scenario and r.tool == "rclone" and r.good), None)


def ratio(row: Row, ref: Row | None, scenario: str, best: bool = False) -> float | None:
    """dlengine's rate over rclone's (objects/s for small, MB/s for large: the
    same thing for equal data sets): rclone's wall time over ours."""
    if ref is None:
        return None
    mine, theirs = (row.best_wall, ref.best_wall) if best else (row.wall, ref.wall)
    if not mine or not theirs:
        return None
    return (
        (row.nbytes / mine) / (ref.nbytes / theirs)
        if scenario == "large"
        else (row.objects / mine) / (ref.objects / theirs)
    )


def throughput_table(rows: list[Row]) -> list[str]:
    out = [
        "| data set | tool | settings | wall s: median (min-max) | objects/s | MB/s | CPU s | server CPU s "
        "| other CPU s | max RSS MB | vs rclone |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        walls = [s.wall for s in row.good]
        spread = f"{row.wall:.2f} ({min(walls):.2f}-{max(walls):.2f})" if walls else "failed"
        r = ratio(row, rclone_row(rows, row.scenario), row.scenario)
        label = f"{row.objects:,} x {human_size(row.nbytes // max(1, row.objects))}"
        out.append(
            f"| {label} | {row.tool} | {row.settings} | {spread} | {fmt(row.objects_per_s, ',.0f')} "
            f"| {fmt(row.mb_per_s)} | {fmt(row.cpu)} | {fmt(row.extra_median('server_cpu'))} "
            f"| {fmt(row.extra_median('other_cpu'))} | {fmt(row.maxrss, ',.0f')} | {fmt(r, '.2f')} |"
        )
    return out


def targets(
    rows: list[Row], submit: SubmitResult | None, ds: Dataset, args: argparse.Namespace
) -> list[tuple[str, str, str, str]]:
    """(target, measured, goal, verdict)."""
    result: list[tuple[str, str, str, str]] = []
    for scenario, goal, unit in (("small", SMALL_RATIO_GOAL, "objects/s"), ("large", LARGE_RATIO_GOAL, "MB/s")):
        mine = [r for r in rows if r.scenario == scenario and r.tool == "dlengine"]
        if not mine:
            continue
        ref = rclone_row(rows, scenario)
        name = f"{ds.count(scenario):,} x {human_size(ds.size(scenario))}: dlengine {unit} / rclone {unit}"
        default = next(r for r in mine if r.fsync)
        nofsync = next((r for r in mine if not r.fsync), default)
        r_default, r_nofsync = ratio(default, ref, scenario), ratio(nofsync, ref, scenario)
        if r_default is None:
            result.append((name, "n/a (rclone not run)", f">= {goal}", "not measured"))
            continue
        b_default, b_nofsync = ratio(default, ref, scenario, best=True), ratio(nofsync, ref, scenario, best=True)
        measured = (
            f"medians: {r_default:.2f} (fsync on), {fmt(r_nofsync, '.2f')} (fsync off); "
            f"best runs: {fmt(b_default, '.2f')}, {fmt(b_nofsync, '.2f')}"
        )
        verdict = (
            "met" if r_default >= goal else ("missed (met with fsync off)" if (r_nofsync or 0) >= goal else "missed")
        )
        result.append((name, measured, f">= {goal}", verdict))
    if submit is not None:
        n = f"{submit.objects:,}-object range job"
        if submit.wall is None:
            result.append((f"submit {n}: time", "failed", f"<= {SUBMIT_SECONDS_GOAL:.0f} s", "not measured"))
        else:
            ok = submit.wall <= SUBMIT_SECONDS_GOAL
            scale = "" if submit.objects == 1_000_000 else " (goal is for 1,000,000)"
            result.append(
                (
                    f"submit {n}: time",
                    f"{submit.wall:.2f} s",
                    f"<= {SUBMIT_SECONDS_GOAL:.0f} s{scale}",
                    "met" if ok else "missed",
                )
            )
            ok = (submit.rss or 0) <= SUBMIT_RSS_MB_GOAL
            result.append(
                (
                    f"submit {n}: peak RSS",
                    f"{submit.rss:.0f} MB",
                    f"<= {SUBMIT_RSS_MB_GOAL:.0f} MB",
                    "met" if ok else "missed",
                )
            )
    return result


def machine_info(workdir: Path) -> list[str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    fs = "?"
    with contextlib.suppress(OSError):
        best = ""
        for text in Path("/proc/mounts").read_text().splitlines():
            dev, mnt, fstype = text.split()[:3]
            if str(workdir).startswith(mnt.rstrip("/") + "/") and len(mnt) >= len(best):
                best, fs = mnt, f"{fstype} ({dev} on {mnt})"
    return [
        f"- machine: nproc {os.cpu_count()}, {cpu}, {mem} RAM, Linux {platform.release()}",
        f"- work directory file system: {fs}",
        f"- python: {platform.python_version()} ({sys.executable})",
    ]


def git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return "?"
    return rev.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")


def report(
    ctx: Context,
    rows: list[Row],
    submit: SubmitResult | None,
    profiles: list[Profile],
    started: dt.datetime,
    elapsed: float,
) -> str:
    args = ctx.args
    lines = [
        "## Latest run",
        "",
        f"- date: {started.strftime('%Y-%m-%d %H:%M %Z')} (took {elapsed / 60:.1f} min)",
        *machine_info(ctx.workdir),
        f"- dlengine: {first_line([*ctx.dlengine, '--version'])} (git {git_revision()}); "
        f"{'extra env: ' + ' '.join(f'{k}={v}' for k, v in ctx.dl_env.items()) if ctx.dl_env else 'default settings'}",
    ]
    if ctx.server.version:
        lines.append(f"- server: {ctx.server.version} on 127.0.0.1")
    peers = [
        f"{t}: {first_line([p, '--version'])}" for t, p in ctx.tools.items() if p and t in ("rclone", "aria2c", "wget")
    ]
    if peers and not args.skip_peers:
        lines.append(f"- peers: {'; '.join(peers)}")
    lines += [
        f"- command: `{shlex.join(['python3', 'bench/bench.py', *sys.argv[1:]])}`",
        f"- each figure: median of {args.repeat} run(s), wall time from process start to exit, tools run in a rotating "
        f"order, `sync` and a wait of up to {args.quiet_wait:g}s for a quiet machine before each run; MB = 10^6 bytes; "
        "CPU s = user + system of the tool's whole process tree; server CPU s = the HTTP server's; other CPU s = "
        "the rest of the machine during the run (kernel writeback threads, other users' processes): large values "
        "mean a disturbed measurement; max RSS = largest single process",
    ]
    busy = [s.extra["busy_before"] for r in rows for s in r.samples if "busy_before" in s.extra]
    if busy:
        noisy = sum(b >= 0.25 for b in busy)
        lines.append(
            f"- machine load before the runs: median {100 * median(busy):.0f}% of all cores busy; "
            f"{noisy} of {len(busy)} runs started on a machine still >= 25% busy after the wait"
        )
    lines.append("")
    if rows:
        lines += ["### Throughput", "", *throughput_table(rows), ""]
        spans = [
            f"{r.scenario} fsync {'on' if r.fsync else 'off'}: {span}"
            for r in rows
            if r.tool == "dlengine" and (span := job_span(r)) is not None
        ]
        if spans:
            lines += [
                "Where the wall time of the median dlengine run goes: job span (first claim to job finished, from "
                "the ledger), plus `dlengine run` start-up (supervisor, spawned workers, dispatch, first claim) and "
                "shutdown:",
                "",
                *[f"- {span}" for span in spans],
                "",
            ]
        failed = [f"- {r.scenario} {r.tool}: {n}" for r in rows for n in r.failures]
        if failed:
            lines += ["Failed runs (left out of the medians):", "", *failed, ""]
    if submit is not None:
        lines += [
            "### Submit",
            "",
            f'`dlengine download "{submit_template(submit.objects)}" ais://big --no-start` in a fresh home, '
            f"peak RSS by {submit.method}.",
            "",
            "| objects | wall s: median (min-max) | peak RSS MB | ledger size MB |",
            "|---:|---:|---:|---:|",
        ]
        if submit.walls:
            lines.append(
                f"| {submit.objects:,} | {submit.wall:.2f} ({min(submit.walls):.2f}-{max(submit.walls):.2f}) "
                f"| {fmt(submit.rss, ',.0f')} | {submit.ledger_mb:,.0f} |"
            )
        else:
            lines.append(f"| {submit.objects:,} | failed: {'; '.join(submit.failures)[:300]} | - | - |")
        lines.append("")
    verdicts = targets(rows, submit, ctx.ds, args)
    if verdicts:
        lines += ["### Targets", "", "| target | measured | goal | result |", "|---|---|---|---|"]
        lines += [f"| {t} | {m} | {g} | **{v}** |" for t, m, g, v in verdicts]
        lines.append("")
    if profiles:
        lines += ["### Hot spots (generated)", ""]
        for prof in profiles:
            lines += [f"#### {prof.title}", "", f"`{prof.command}`", "", *prof.lines, ""]
    return "\n".join(lines).rstrip() + "\n"


def write_results(path: Path, generated: str) -> None:
    header = (
        "# dlengine benchmark results\n\nProduced by `bench/bench.py` (usage: `python3 bench/bench.py --help`).\n\n"
    )
    old = path.read_text() if path.exists() else header
    block = f"{BEGIN_MARK}\n{generated}{END_MARK}"
    if BEGIN_MARK in old and END_MARK in old:
        before, rest = old.split(BEGIN_MARK, 1)
        after = rest.split(END_MARK, 1)[1]
        text = before + block + after
    else:
        text = old.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def print_summary(rows: list[Row], submit: SubmitResult | None, ctx: Context) -> None:
    print()
    if rows:
        header = (
            f"{'data set':<16} {'tool':<9} {'settings':<44} {'wall s':>8} {'obj/s':>9} {'MB/s':>8} "
            f"{'CPU s':>7} {'other CPU':>9} {'vs rclone':>9}"
        )
        print(header)
        print("-" * len(header))
        for row in rows:
            r = ratio(row, rclone_row(rows, row.scenario), row.scenario)
            label = f"{row.objects:,} x {human_size(row.nbytes // max(1, row.objects))}"
            print(
                f"{label:<16} {row.tool:<9} {row.settings[:44]:<44} {fmt(row.wall, '.2f'):>8} "
                f"{fmt(row.objects_per_s, ',.0f'):>9} {fmt(row.mb_per_s):>8} {fmt(row.cpu):>7} "
                f"{fmt(row.extra_median('other_cpu')):>9} {fmt(r, '.2f'):>9}"
            )
    if submit is not None and submit.walls:
        print(
            f"\nsubmit {submit.objects:,} objects: {submit.wall:.2f}s, peak RSS {fmt(submit.rss, '.0f')} MB, "
            f"ledger {submit.ledger_mb:.0f} MB"
        )
    verdicts = targets(rows, submit, ctx.ds, ctx.args)
    if verdicts:
        print()
        for t, m, g, v in verdicts:
            print(f"target {t}: {m} (goal {g}): {v}")


# ---------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/bench.py",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else "",
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else "",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--small", type=int, default=10_000, metavar="N", help="number of small objects (default 10000)")
    p.add_argument("--small-size", type=parse_size, default=parse_size("10KiB"), metavar="SIZE", help="default 10KiB")
    p.add_argument("--large", type=int, default=4, metavar="N", help="number of large objects (default 4)")
    p.add_argument("--large-size", type=parse_size, default=parse_size("256MiB"), metavar="SIZE", help="default 256MiB")
    p.add_argument(
        "--submit-count",
        type=int,
        default=1_000_000,
        metavar="N",
        help="objects in the submit benchmark (default 1000000)",
    )
    p.add_argument(
        "--repeat", type=int, default=3, metavar="R", help="runs per figure; the median is reported (default 3)"
    )
    p.add_argument("--only", action="append", choices=SCENARIOS, help="run only this part (repeatable)")
    p.add_argument("--skip-peers", action="store_true", help="do not run rclone, aria2c, wget")
    p.add_argument(
        "--wget-max", type=int, default=0, metavar="N", help="wget fetches at most N objects per data set (0 = all)"
    )
    p.add_argument(
        "--server",
        choices=("auto", "nginx", "httpd", "python"),
        default="auto",
        help="auto: nginx if installed, else harness/httpd.py, else python3 -m http.server",
    )
    p.add_argument(
        "--profile",
        choices=("auto", "always", "never"),
        default="auto",
        help="profile dlengine (py-spy, strace -c, cProfile) when a target is missed (auto), always or never",
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=3.0,
        metavar="S",
        help="before each timed run, wait up to S seconds for the machine to be <25%% busy (default 3; 0 = never)",
    )
    p.add_argument("--top", type=int, default=12, metavar="N", help="hot spots to list per profile (default 12)")
    p.add_argument(
        "--dlengine-env",
        action="append",
        default=[],
        metavar="K=V",
        help="extra environment for dlengine, e.g. DLENGINE_THREADS=32 (repeatable)",
    )
    p.add_argument("--workdir", type=Path, help="work directory (default: a new temp dir); its data set is reused")
    p.add_argument("--keep", action="store_true", help="keep the work directory (data, homes, outputs, logs)")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="results file (default bench/RESULTS.md)")
    p.add_argument("--no-results", action="store_true", help="print only; do not write the results file")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write every sample as JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.repeat < 1 or args.small < 1 or args.large < 1 or args.submit_count < 1:
        raise SystemExit("bench: counts must be >= 1")
    dl_env: dict[str, str] = {}
    for item in args.dlengine_env:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("DLENGINE_"):
            raise SystemExit(f"bench: --dlengine-env wants DLENGINE_NAME=VALUE, got {item!r}")
        dl_env[key] = value
    scenarios = [s for s in SCENARIOS if s in (args.only or SCENARIOS)]
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.monotonic()
    made_workdir = args.workdir is None
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="dlengine-bench-"))).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    log(f"work directory {workdir}")
    ds = Dataset(workdir / "www", args.small, args.small_size, args.large, args.large_size)
    tools = {
        "rclone": find_tool("rclone"),
        "aria2c": find_tool("aria2c"),
        "wget": find_tool("wget"),
        "py-spy": find_tool("py-spy"),
        "strace": find_tool("strace"),
    }
    log("tools: " + ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in tools.items()))
    ds.root.mkdir(parents=True, exist_ok=True)
    generate(ds, scenarios)
    server = Server(args.server, ds.root, workdir)
    ctx = Context(args, workdir, ds, server, dlengine_cmd(), tools, dl_env)
    rows: list[Row] = []
    submit: SubmitResult | None = None
    profiles: list[Profile] = []
    try:
        probe = f"/{scenarios[0]}/{ds.names(scenarios[0])[0]}" if scenarios[0] != "submit" else None
        if probe:
            server.start(probe)
        for scenario in scenarios:
            if scenario == "submit":
                submit = submit_bench(ctx)
            else:
                rows += throughput(ctx, scenario)
        if args.profile != "never":
            verdicts = {t: v for t, _, _, v in targets(rows, submit, ds, args)}
            for scenario in ("small", "large"):
                if scenario not in scenarios:
                    continue
                missed = any(
                    t.startswith(f"{ds.count(scenario):,} x") and v.startswith("missed") for t, v in verdicts.items()
                )
                if missed or args.profile == "always":
                    for tool in ("py-spy", "py-spy-gil", "strace"):
                        if tools[PROFILERS[tool]] and not (tool == "strace" and scenario == "large"):
                            log(f"profiling {scenario} with {tool}")
                            profiles.append(profile_run(ctx, scenario, tool))
            if "submit" in scenarios and (
                args.profile == "always" or any(t.startswith("submit") and v != "met" for t, v in verdicts.items())
            ):
                log("profiling the submit with cProfile")
                profiles.append(profile_submit(ctx))
    finally:
        server.stop()
    elapsed = time.monotonic() - t0
    print_summary(rows, submit, ctx)
    generated = report(ctx, rows, submit, profiles, started, elapsed)
    if not args.no_results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        write_results(args.results, generated)
        log(f"wrote {args.results}")
    if args.json:
        data = {
            "rows": [
                {**asdict(r), "wall": r.wall, "objects_per_s": r.objects_per_s, "mb_per_s": r.mb_per_s} for r in rows
            ],
            "submit": asdict(submit) if submit else None,
            "targets": targets(rows, submit, ds, args),
        }
        args.json.write_text(json.dumps(data, indent=2))
    if args.keep:
        log(f"kept {workdir}")
    elif made_workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        shutil.rmtree(workdir / "runs", ignore_errors=True)  # keep the data set for the next run
    return 0


if __name__ == "__main__":
    sys.exit(main())

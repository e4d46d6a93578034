#!/usr/bin/env python3
"""dlengine's HTTP data path against rclone and aria2c, side by side (issue 12).

One run measures, interleaved (the tools take turns within each repetition,
in a rotating order) and with the ratio ``peer seconds / dlengine seconds``
(> 1: dlengine is faster):

========== =================== ============================== ==================
workload   default             where                          peers
========== =================== ============================== ==================
small      10,000 x 10 KiB     nginx on 127.0.0.1             rclone
medium     1,000 x 1 MiB       nginx on 127.0.0.1             rclone
large      4 x 256 MiB         nginx on 127.0.0.1             rclone
capped     2 x 256 MiB         nginx ``limit_rate 8m``        aria2c -x8 -s8
wan-large  2 x 200 MiB         lossy WAN (below)              aria2c -x8 -s8
wan-small  2,000 x 50 KiB      lossy WAN                      rclone, aria2c
simple     2,000 x 10 KiB      ``python3 -m http.server``     rclone, aria2c
========== =================== ============================== ==================

``simple`` is a server as simple as they come: Python's own file server on
127.0.0.1 (HTTP/1.0, a connection a request, a listen queue of 5), the kind
of server a data set sits behind on a lab machine. Connections opened
faster than it accepts them are lost in its queue (a SYN dropped and sent
again 1, 2, 4... seconds later): what a tool keeps in flight there decides
whether it takes a second or a minute.

The WAN: this kernel has no ``sch_netem``, so the script creates two network
namespaces (``dlb-srv-PID``, ``dlb-cli-PID``), one TAP device in each, and
joins them with ``bench/wire.c`` (compiled with ``cc`` into the work
directory at run time), which forwards frames with a fixed delay each way
and random loss. nginx runs in the server namespace, every client in the
other. TCP there uses ``--wan-cc`` (default reno: loss-based like the
cubic most servers run; a child namespace here may not select cubic, and
bbr, this machine's default, ignores loss). Everything is removed at the
end, also on Ctrl-C or SIGTERM; no existing interface and not the root
namespace's ``lo`` is touched. Only 127.0.0.1 and those namespaces are used.

dlengine is timed as a user runs it: a fresh ``DLENGINE_HOME`` per run,
``dlengine submit --no-start job.json`` (a range job, not timed), then
``dlengine run --quiet`` (timed, process start to exit; ``download --wait``
would detach a supervisor). Its CPU per object is user + system of ``run``
and every process it reaped (``wait4``), divided by the object count.
Default settings (durable: fsync on). Every tool's output is checked: every
object present with the right size, and a sample compared with the source
(whole files up to 8 MiB, else 1 MiB windows at the ends and at random
offsets).

Results: a table on stdout and a section of ``bench/RESULTS.md`` named by
``--label`` (replaced on the next run with the same label; the rest of the
file is kept); ``--json`` writes every sample.

Usage (from the repository root, as root: namespaces need it)::

    python3 bench/datapath.py --label before          # full run, 15-25 min on 2 busy cores
    python3 bench/datapath.py --quick --no-results    # < 2 min, smaller sizes
    python3 bench/datapath.py --only small,wan-small --reps 5
    python3 bench/datapath.py --small 20000x4KiB --delay-ms 50 --loss 0.5

Needs nginx, rclone, aria2c, cc and iproute2
(``apt-get install -y nginx-light rclone aria2 gcc iproute2``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
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
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from harness import loopfs  # noqa: E402
from harness.scratch import set_aside  # noqa: E402

DEFAULT_RESULTS = REPO / "bench" / "RESULTS.md"
WIRE_SOURCE = Path(__file__).resolve().parent / "wire.c"
MB = 1_000_000
MIB = 1 << 20
RUN_TIMEOUT = 1800.0  # seconds; a hung run is killed and counted as failed
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy", "no_proxy")
WAN_SUBNET = "10.213.77"  # inside the namespaces this script creates only
WAN_PORT = 8080
NS_PREFIX = "dlb-"
TAP_SERVER, TAP_CLIENT = "dlbw-srv", "dlbw-cli"


# ---------------------------------------------------------------- workloads


@dataclass(frozen=True)
class Workload:
    """One data set and where and against whom it is fetched."""

    key: str
    count: int
    size: int
    wan: bool  # served across the lossy wire, not on 127.0.0.1
    peers: tuple[str, ...]
    long: bool = False  # one repetition by default (``--long-reps``)
    goal: float = 1.0  # the issue's target ratio against every peer

    @property
    def nbytes(self) -> int:
        return self.count * self.size

    @property
    def width(self) -> int:
        return max(5, len(str(self.count)))

    def names(self) -> list[str]:
        return [f"obj-{i:0{self.width}d}.bin" for i in range(1, self.count + 1)]

    def label(self) -> str:
        return f"{self.key}: {self.count:,} x {human_size(self.size)}"


# key: (full size, --quick size, wan, peers, long, goal)
WORKLOADS: dict[str, tuple[str, str, bool, tuple[str, ...], bool, float]] = {
    "small": ("10000x10KiB", "2000x10KiB", False, ("rclone",), False, 1.3),
    "medium": ("1000x1MiB", "100x1MiB", False, ("rclone",), False, 1.0),
    "large": ("4x256MiB", "2x64MiB", False, ("rclone",), False, 1.1),
    "capped": ("2x256MiB", "2x32MiB", False, ("aria2c",), False, 1.0),
    "wan-large": ("2x200MiB", "2x4MiB", True, ("aria2c",), True, 1.0),
    "wan-small": ("2000x50KiB", "200x50KiB", True, ("rclone", "aria2c"), False, 1.0),
    "simple": ("2000x10KiB", "500x10KiB", False, ("rclone", "aria2c"), False, 1.0),
}
SMALL_CPU_GOAL_MS = 0.15


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``10KiB`` -> 10240, ``1MB`` -> 1000000, ``4096`` -> 4096."""
    m = _SIZE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 10KiB, 256MiB)")
    power = "kmgt".index(m.group(2).lower()) + 1 if m.group(2) else 0
    return int(float(m.group(1)) * (1024 if m.group(3) else 1000) ** power)


def parse_shape(text: str) -> tuple[int, int]:
    """``10000x10KiB`` -> (10000, 10240)."""
    count, sep, size = text.lower().partition("x")
    if not sep or not count.strip().isdigit() or int(count) < 1:
        raise argparse.ArgumentTypeError(f"not COUNTxSIZE: {text!r} (e.g. 1000x1MiB)")
    return int(count), parse_size(size)


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:g} {unit}"
        n /= 1024
    return f"{n:g} GiB"  # unreachable


def log(msg: str) -> None:
    print(f"[datapath {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd: Sequence[str], check: bool = True, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    """A short setup command; its output is kept for the error message."""
    out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    if check and out.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)}: exit {out.returncode}: {out.stderr.strip()[-400:]}")
    return out


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Every child's environment: no proxies, no inherited DLENGINE_/RCLONE_ knobs."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in PROXY_VARS and not k.startswith(("DLENGINE_", "RCLONE_"))
    }
    env["no_proxy"] = env["NO_PROXY"] = "127.0.0.1,localhost," + WAN_SUBNET + ".1"
    env.update(extra or {})
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def first_line(cmd: Sequence[str]) -> str:
    out = run(cmd, check=False)
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "?"


# ---------------------------------------------------------------- data set


def generate(root: Path, wl: Workload) -> None:
    """Random objects under ``root/<key>/``; files of the right size are kept."""
    directory = root / wl.key
    directory.mkdir(parents=True, exist_ok=True)
    wanted = set(wl.names())
    for entry in os.scandir(directory):  # stale objects would be in rclone's listing
        if entry.name not in wanted:
            os.unlink(entry.path)
    made = 0
    for name in sorted(wanted):
        path = directory / name
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_size == wl.size:
                continue
        with open(path, "wb") as f:
            for offset in range(0, wl.size, MIB):
                f.write(os.urandom(min(MIB, wl.size - offset)))
        made += 1
    if made:
        log(f"data set {wl.label()}: {made} objects written under {directory}")
    for path in (root, directory):
        path.chmod(0o755)  # the nginx worker may run as another user


# ---------------------------------------------------------------- servers


@contextlib.contextmanager
def simple_server(root: Path) -> Iterator[str]:
    """``python3 -m http.server`` serving ``root`` on 127.0.0.1: its URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/")
        log(f"simple server: {shlex.join(cmd[1:])} (pid {proc.pid})")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def nginx_conf(base: Path, listen: str, root: Path, limit_rate: str) -> Path:
    """A config whose pid, logs and temp paths all live under ``base``."""
    base.mkdir(parents=True, exist_ok=True)
    temps = "\n".join(
        f"    {kind}_temp_path {base / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root root;\n" if os.geteuid() == 0 else ""  # workers must read a 0700 temp dir
    text = f"""{user}daemon off;
worker_processes 1;
pid {base / "nginx.pid"};
error_log {base / "error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    keepalive_timeout 120s;
    default_type application/octet-stream;
{temps}
    server {{
        listen {listen};
        root {root};
        autoindex on;
        location /capped/ {{ limit_rate {limit_rate}; }}
    }}
}}
"""
    conf = base / "nginx.conf"
    conf.write_text(text)
    return conf


@contextlib.contextmanager
def nginx(
    base: Path, listen: str, root: Path, limit_rate: str, prefix: Sequence[str] = ()
) -> Iterator[subprocess.Popen[bytes]]:
    """nginx as a non-daemon child (inside a namespace with ``prefix``)."""
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    conf = nginx_conf(base, listen, root, limit_rate)
    cmd = [*prefix, exe, "-p", str(base), "-e", str(base / "error.log"), "-c", str(conf)]
    with open(base / "stderr.log", "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=clean_env())
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait_http(url: str, prefix: Sequence[str] = (), timeout: float = 20.0) -> None:
    """Until ``url`` answers 200 (from inside the client namespace with ``prefix``)."""
    deadline = time.monotonic() + timeout
    while True:
        if prefix:
            probe = f"import urllib.request as u; u.urlopen({url!r}, timeout=5).read(1)"
            if run([*prefix, sys.executable, "-c", probe], check=False, env=clean_env()).returncode == 0:
                return
        else:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(url, timeout=5).read(1)
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"no answer from {url}")
        time.sleep(0.1)


# ---------------------------------------------------------------- the lossy WAN


@dataclass
class Wan:
    """Two namespaces joined by ``wire`` (delay + loss); torn down on exit."""

    workdir: Path
    delay_ms: float
    loss_pct: float
    rate_mbps: float  # MB/s per direction, 0 = none
    cc: str
    server_ns: str = field(default_factory=lambda: f"{NS_PREFIX}srv-{os.getpid()}")
    client_ns: str = field(default_factory=lambda: f"{NS_PREFIX}cli-{os.getpid()}")
    wire: subprocess.Popen[str] | None = None
    created: list[str] = field(default_factory=list)
    counters: str = ""

    @property
    def base_url(self) -> str:
        return f"http://{WAN_SUBNET}.1:{WAN_PORT}"

    def on_server(self) -> list[str]:
        return ["ip", "netns", "exec", self.server_ns]

    def on_client(self) -> list[str]:
        return ["ip", "netns", "exec", self.client_ns]

    def describe(self) -> str:
        rate = f", {self.rate_mbps:g} MB/s per direction" if self.rate_mbps else ", no rate cap"
        return (
            f"{self.delay_ms:g} ms each way ({2 * self.delay_ms:g} ms RTT), {self.loss_pct:g}% loss each way"
            f"{rate}, TCP {self.cc}, MTU 1500"
        )

    def __enter__(self) -> Wan:
        remove_stale_namespaces()
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        wire = compile_wire(self.workdir)
        for ns, tap in ((self.server_ns, TAP_SERVER), (self.client_ns, TAP_CLIENT)):
            run(["ip", "netns", "add", ns])
            self.created.append(ns)
            # Created inside the namespace: nothing ever appears in the root one.
            run(["ip", "-n", ns, "tuntap", "add", "mode", "tap", "name", tap])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv4.tcp_congestion_control={self.cc}"])
        self._start_wire(wire)
        for ns, tap, host in ((self.server_ns, TAP_SERVER, 1), (self.client_ns, TAP_CLIENT, 2)):
            run(["ip", "-n", ns, "addr", "add", f"{WAN_SUBNET}.{host}/24", "dev", tap])
            run(["ip", "-n", ns, "link", "set", tap, "up"])
        log(f"WAN up: {self.server_ns} <-> {self.client_ns}: {self.describe()}")

    def _start_wire(self, exe: Path) -> None:
        cmd = [
            str(exe),
            f"/run/netns/{self.server_ns}",
            TAP_SERVER,
            f"/run/netns/{self.client_ns}",
            TAP_CLIENT,
            str(round(self.delay_ms * 1000)),
            str(round(self.loss_pct * 10_000)),
            str(round(self.rate_mbps * MB)),
            "12",
        ]
        self.wire = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.wire.stdout
        if self.wire.stdout.readline().strip() != "ready":
            raise RuntimeError(f"wire did not start: {self.wire.stderr.read() if self.wire.stderr else ''}")

    def close(self) -> None:
        if self.wire and self.wire.poll() is None:
            self.wire.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                _, err = self.wire.communicate(timeout=5)
                self.counters = " ".join(err.split())
                log(self.counters)
            if self.wire.poll() is None:
                self.wire.kill()
                self.wire.wait()
        for ns in reversed(self.created):  # deleting a namespace deletes its TAP device
            run(["ip", "netns", "del", ns], check=False)
        self.created.clear()


def compile_wire(workdir: Path) -> Path:
    exe = workdir / "wire"
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise RuntimeError("no C compiler (cc) for bench/wire.c")
    run([cc, "-O2", "-Wall", "-o", str(exe), str(WIRE_SOURCE)])
    return exe


def remove_stale_namespaces() -> None:
    """Namespaces a killed earlier run left behind (its pid is gone)."""
    out = run(["ip", "netns", "list"], check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(rf"{NS_PREFIX}(?:srv|cli)-(\d+)", name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            log(f"removing stale namespace {name}")
            run(["ip", "netns", "del", name], check=False)


# ---------------------------------------------------------------- measuring


CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds (all cores) not idle since boot."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / CLK_TCK


def wait_quiet(max_wait: float, threshold: float = 0.25) -> float:
    """Wait up to ``max_wait`` s for a mostly idle machine; the busy share of
    all cores over the last half second."""
    deadline = time.monotonic() + max_wait
    cores = os.cpu_count() or 1
    while True:
        b0, t0 = machine_busy(), time.monotonic()
        time.sleep(0.5)
        busy = (machine_busy() - b0) / ((time.monotonic() - t0) * cores)
        if busy < threshold or time.monotonic() >= deadline:
            return busy


@dataclass
class Sample:
    """One timed run of one tool on one workload."""

    tool: str
    rep: int
    wall: float
    cpu: float  # user + system of the process and every process it reaped
    other_cpu: float  # the rest of the machine meanwhile (other users, nginx, kernel)
    busy_before: float
    ok: bool
    note: str = ""
    started: float = 0.0  # epoch seconds at process start
    startup: float | None = None  # dlengine: process start to the job's first claim
    span: float | None = None  # dlengine: first claim to job finished
    shutdown: float | None = None  # dlengine: job finished to process exit


def timed(tool: str, rep: int, cmd: Sequence[str], env: dict[str, str], logfile: Path, quiet_wait: float) -> Sample:
    """Run ``cmd`` after a ``sync`` and a wait for a quiet machine."""
    os.sync()  # one run's writeback must not slow the next
    busy = wait_quiet(quiet_wait) if quiet_wait > 0 else 0.0
    with open(logfile, "ab") as out:
        out.write(f"$ {shlex.join(cmd)}\n".encode())
        out.flush()
        m0, start, epoch = machine_busy(), time.perf_counter(), time.time()
        proc = subprocess.Popen(
            list(cmd), stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, cwd=REPO, start_new_session=True
        )
        timer = threading.Timer(RUN_TIMEOUT, kill_group, (proc,))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C, SIGTERM: no process of ours may outlive the run
            kill_group(proc)
            proc.wait()
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
    rc = os.waitstatus_to_exitcode(status)
    proc.returncode = rc  # reaped already
    cpu = usage.ru_utime + usage.ru_stime
    other = max(0.0, machine_busy() - m0 - cpu)
    note = "" if rc == 0 else f"exit {rc}; see {logfile}"
    return Sample(tool, rep, wall, cpu, other, busy, rc == 0, note, started=epoch)


def fresh_venv(path: Path) -> Path:
    """A new venv with this checkout installed as a user installs it (not
    editable); its ``dlengine`` command."""
    log(f"installing this checkout into a fresh venv at {path} (pip install .)")
    run([sys.executable, "-m", "venv", "--clear", str(path)])
    run([str(path / "bin" / "pip"), "install", "-q", str(REPO)], timeout=600)
    return path / "bin" / "dlengine"


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the session the run was started in (its workers too)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


# ---------------------------------------------------------------- verification


def compare(src: Path, dst: Path, rng: random.Random) -> bool:
    """Whole file up to 8 MiB; else 1 MiB windows at both ends and 6 random offsets."""
    size = src.stat().st_size
    if size <= 8 * MIB:
        return src.read_bytes() == dst.read_bytes()
    offsets = [0, size - MIB, *(rng.randrange(0, size - MIB) for _ in range(6))]
    with open(src, "rb") as a, open(dst, "rb") as b:
        for offset in offsets:
            a.seek(offset)
            b.seek(offset)
            if a.read(MIB) != b.read(MIB):
                return False
    return True


def verify(wl: Workload, source: Path, dest: Path, seed: int) -> str:
    """'' when every object is there with its size and a sample is byte-identical."""
    found = {e.name: e.stat().st_size for e in os.scandir(dest) if e.is_file()} if dest.is_dir() else {}
    names = wl.names()
    missing = [n for n in names if n not in found]
    wrong = [n for n in names if n in found and found[n] != wl.size]
    if missing or wrong:
        return f"{len(missing)} missing, {len(wrong)} of a wrong size (of {len(names)}), in {dest}"
    rng = random.Random(seed)
    sample = sorted({names[0], names[-1], *rng.sample(names, min(4, len(names)))})
    bad = [n for n in sample if not compare(source / n, dest / n, rng)]
    return f"differs from the source: {', '.join(bad)} in {dest}" if bad else ""


# ---------------------------------------------------------------- the tools


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    data: Path
    lo_url: str
    wan: Wan | None
    dlengine: list[str]
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    # where the runs write (their homes, ledgers and objects): a fresh
    # journaled ext4 (``harness/loopfs.py``), else ``workdir/runs``
    runs: Path | None = None
    fs: str = ""  # the results' line about it

    @property
    def journaled(self) -> bool:
        """Deleting is free there (no ``recently_deleted`` trap): each run's
        files go as soon as they are checked, not into a trash kept to the end."""
        return self.runs is not None

    simple_url: str = ""  # Python's http.server (the ``simple`` workload)

    def base(self, wl: Workload) -> str:
        if wl.wan:
            assert self.wan
            return self.wan.base_url
        return self.simple_url if wl.key == "simple" else self.lo_url

    def prefix(self, wl: Workload) -> list[str]:
        return self.wan.on_client() if wl.wan and self.wan else []

    def run_dir(self, wl: Workload, tool: str, rep: int) -> Path:
        path = (self.runs or self.workdir / "runs") / f"{wl.key}-{tool}-{rep}"
        if self.journaled:
            shutil.rmtree(path, ignore_errors=True)
        else:
            set_aside(path, self.workdir / "trash")  # not deleted: see harness/scratch.py
        path.mkdir(parents=True)
        return path

    def dl_env(self, home: Path) -> dict[str, str]:
        env = clean_env({"DLENGINE_HOME": str(home), "PYTHONPATH": str(REPO)})
        # An installed package has its bytecode cached; this machine sets
        # PYTHONDONTWRITEBYTECODE, so every spawned worker would compile.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(self.workdir / "pycache")
        return env

    def run_dlengine(self, wl: Workload, rep: int) -> Sample:
        home = self.run_dir(wl, "dlengine", rep)
        env = self.dl_env(home)
        job = home / "job.json"
        template = f"{self.base(wl)}/{wl.key}/obj-{{{1:0{wl.width}d}..{wl.count:0{wl.width}d}}}.bin"
        job.write_text(json.dumps({"type": "range", "template": template, "bucket": {"name": "bench"}}))
        job_id = run([*self.dlengine, "submit", "--no-start", str(job)], env=env, cwd=REPO).stdout.split()[-1]
        sample = timed(
            "dlengine",
            rep,
            [*self.prefix(wl), *self.dlengine, "run", "--quiet"],
            env,
            home / "run.log",
            self.args.quiet_wait,
        )
        if sample.ok:
            self._split(sample, job_id, env)
        return self._checked(sample, wl, home / "data" / "ais" / "bench", rep)

    def _split(self, sample: Sample, job_id: str, env: dict[str, str]) -> None:
        """Where the run's wall time went, from the job's times in the ledger."""
        out = run([*self.dlengine, "show", job_id, "--json"], check=False, env=env, cwd=REPO)
        with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
            status = json.loads(out.stdout)
            first, done = (
                dt.datetime.fromisoformat(status[k].replace("Z", "+00:00")).timestamp()
                for k in ("started_time", "finished_time")
            )
            sample.startup, sample.span = first - sample.started, done - first
            sample.shutdown = sample.started + sample.wall - done

    def run_rclone(self, wl: Workload, rep: int) -> Sample:
        out = self.run_dir(wl, "rclone", rep)
        conf = out / "rclone.conf"
        conf.touch()
        cmd = [
            *self.prefix(wl),
            "rclone",
            "copy",
            "-q",
            "--http-url",
            self.base(wl),
            f":http:{wl.key}",
            str(out / "out"),
            "--transfers",
            "16",
        ]
        env = clean_env({"RCLONE_CONFIG": str(conf)})
        sample = timed("rclone", rep, cmd, env, out / "run.log", self.args.quiet_wait)
        return self._checked(sample, wl, out / "out", rep)

    def run_aria2c(self, wl: Workload, rep: int) -> Sample:
        out = self.run_dir(wl, "aria2c", rep)
        urls = out / "urls.txt"
        urls.write_text("".join(f"{self.base(wl)}/{wl.key}/{n}\n" for n in wl.names()))
        cmd = [
            *self.prefix(wl),
            "aria2c",
            "-q",
            "-i",
            str(urls),
            "-d",
            str(out / "out"),
            *ARIA2C_FLAGS,
        ]
        sample = timed("aria2c", rep, cmd, clean_env(), out / "run.log", self.args.quiet_wait)
        return self._checked(sample, wl, out / "out", rep)

    def _checked(self, sample: Sample, wl: Workload, dest: Path, rep: int) -> Sample:
        if sample.ok:
            problem = verify(wl, self.data / wl.key, dest, seed=rep)
            sample.ok, sample.note = not problem, problem
        if wl.size >= 8 * MIB or self.journaled:  # (a few big files: cheap to drop, costly to keep)
            shutil.rmtree(dest, ignore_errors=True)
        return sample

    def one(self, wl: Workload, tool: str, rep: int) -> Sample:
        runner = {"dlengine": self.run_dlengine, "rclone": self.run_rclone, "aria2c": self.run_aria2c}[tool]
        try:
            sample = runner(wl, rep)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            sample = Sample(tool, rep, 0.0, 0.0, 0.0, 0.0, False, str(exc)[-400:])
        status = "ok" if sample.ok else f"FAILED: {sample.note}"
        log(
            f"{wl.label()} rep {rep + 1} {tool}: {sample.wall:.2f}s, CPU {sample.cpu:.2f}s, "
            f"other CPU {sample.other_cpu:.1f}s, {wl.nbytes / MB / max(sample.wall, 1e-9):.1f} MB/s, {status}"
        )
        return sample

    def workload(self, wl: Workload, reps: int) -> None:
        generate(self.data, wl)
        tools = ["dlengine", *wl.peers]
        samples = self.samples.setdefault(wl.key, [])
        for rep in range(reps):
            shift = rep % len(tools)  # no tool always goes first
            samples.extend(self.one(wl, t, rep) for t in tools[shift:] + tools[:shift])

    def warm_up(self) -> None:
        """One untimed 1-object job: bytecode cached, page cache warm."""
        home = self.run_dir(Workload("warmup", 1, 1, False, ()), "dlengine", 0)
        (self.data / "warmup").mkdir(exist_ok=True)
        (self.data / "warmup" / "obj-00001.bin").write_bytes(b"x")
        env = self.dl_env(home)
        job = home / "job.json"
        job.write_text(
            json.dumps({"type": "single", "link": f"{self.lo_url}/warmup/obj-00001.bin", "bucket": {"name": "w"}})
        )
        run([*self.dlengine, "submit", "--no-start", str(job)], env=env, cwd=REPO)
        out = run([*self.dlengine, "run", "--quiet"], check=False, env=env, cwd=REPO)
        if out.returncode != 0:
            raise RuntimeError(f"dlengine warm-up run failed: {out.stderr.strip()[-400:]}")


# aria2c: 16 files at once, up to 8 connections per file; -k 1M lets the small
# --quick files split too (at the full sizes the default 20M splits 8 ways already).
ARIA2C_FLAGS = (
    "-j",
    "16",
    "-x",
    "8",
    "-s",
    "8",
    "-k",
    "1M",
    "--file-allocation=none",
    "--allow-overwrite=true",
    "--auto-file-renaming=false",
    "--summary-interval=0",
    "--deferred-input=true",
)
PEER_COMMANDS = {
    "rclone": "rclone copy --http-url URL :http:DIR OUT --transfers 16",
    "aria2c": "aria2c -i URLS -d OUT " + " ".join(ARIA2C_FLAGS),
    "dlengine": "dlengine submit --no-start job.json` (a range job, untimed), then `dlengine run --quiet` (timed)",
}


# ---------------------------------------------------------------- report


def med(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


@dataclass(frozen=True)
class Line:
    """One row of the table: dlengine against one peer on one workload."""

    wl: Workload
    peer: str
    dl_wall: float | None
    peer_wall: float | None
    ratio: float | None
    pair_ratios: tuple[float, ...]
    dl_cpu_ms: float | None
    peer_cpu_ms: float | None
    reps: int
    failures: tuple[str, ...]


def lines_for(wl: Workload, samples: list[Sample]) -> list[Line]:
    dl = {s.rep: s for s in samples if s.tool == "dlengine" and s.ok}
    result = []
    for peer in wl.peers:
        other = {s.rep: s for s in samples if s.tool == peer and s.ok}
        dl_wall, peer_wall = med([s.wall for s in dl.values()]), med([s.wall for s in other.values()])
        pairs = tuple(other[r].wall / dl[r].wall for r in sorted(dl.keys() & other.keys()))
        dl_cpu = med([s.cpu for s in dl.values()])
        peer_cpu = med([s.cpu for s in other.values()])
        failures = tuple(
            f"{s.tool} rep {s.rep + 1}: {s.note}" for s in samples if not s.ok and s.tool in ("dlengine", peer)
        )
        result.append(
            Line(
                wl,
                peer,
                dl_wall,
                peer_wall,
                peer_wall / dl_wall if dl_wall and peer_wall else None,
                pairs,
                dl_cpu * 1000 / wl.count if dl_cpu is not None else None,
                peer_cpu * 1000 / wl.count if peer_cpu is not None else None,
                len(dl),
                failures,
            )
        )
    return result


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(lines: list[Line]) -> list[str]:
    out = [
        "| workload | dlengine s | peer | peer s | ratio (per-rep range) | dlengine MB/s | peer MB/s "
        "| dlengine CPU ms/object | peer CPU ms/object | reps |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for ln in lines:
        pairs = f" ({min(ln.pair_ratios):.2f}-{max(ln.pair_ratios):.2f})" if len(ln.pair_ratios) > 1 else ""
        dl_rate = ln.wl.nbytes / MB / ln.dl_wall if ln.dl_wall else None
        peer_rate = ln.wl.nbytes / MB / ln.peer_wall if ln.peer_wall else None
        out.append(
            f"| {ln.wl.label()} | {fmt(ln.dl_wall, '.2f')} | {ln.peer} | {fmt(ln.peer_wall, '.2f')} "
            f"| **{fmt(ln.ratio, '.2f')}**{pairs} | {fmt(dl_rate, '.1f')} | {fmt(peer_rate, '.1f')} "
            f"| {fmt(ln.dl_cpu_ms, '.3f')} | {fmt(ln.peer_cpu_ms, '.3f')} | {ln.reps} |"
        )
    return out


def targets(lines: list[Line]) -> list[str]:
    out = ["| target (issue 12) | measured | result |", "|---|---:|---|"]
    for ln in lines:
        if ln.ratio is not None:
            met = "met" if ln.ratio >= ln.wl.goal else "**missed**"
            out.append(f"| {ln.wl.key} >= {ln.wl.goal:g}x {ln.peer} | {ln.ratio:.2f}x | {met} |")
        if ln.wl.key == "small" and ln.dl_cpu_ms is not None and ln.peer == ln.wl.peers[0]:
            met = "met" if ln.dl_cpu_ms <= SMALL_CPU_GOAL_MS else "**missed**"
            out.append(f"| small <= {SMALL_CPU_GOAL_MS} ms CPU/object | {ln.dl_cpu_ms:.3f} ms | {met} |")
    return out


def samples_table(bench: Bench, workloads: list[Workload]) -> list[str]:
    out = [
        "| workload | rep | tool | wall s | CPU s | other CPU s | busy before | ok |",
        "|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for wl in workloads:
        for s in bench.samples.get(wl.key, []):
            ok = "ok" if s.ok else f"FAILED: {s.note[:120]}"
            out.append(
                f"| {wl.key} | {s.rep + 1} | {s.tool} | {s.wall:.2f} | {s.cpu:.2f} | {s.other_cpu:.1f} "
                f"| {s.busy_before:.0%} | {ok} |"
            )
    return out


def split_table(bench: Bench, workloads: list[Workload]) -> list[str]:
    out = [
        "| workload | dlengine wall s | start-up s (to first claim) | job span s | shutdown s (job done to exit) |",
        "|---|---:|---:|---:|---:|",
    ]
    for wl in workloads:
        dl = [s for s in bench.samples.get(wl.key, []) if s.tool == "dlengine" and s.ok]
        parts = [med([x for s in dl if (x := getattr(s, k)) is not None]) for k in ("startup", "span", "shutdown")]
        cells = " | ".join(fmt(p, ".2f") for p in parts)
        out.append(f"| {wl.label()} | {fmt(med([s.wall for s in dl]), '.2f')} | {cells} |")
    return out


def git_revision() -> str:
    rev = run(["git", "-C", str(REPO), "log", "-1", "--format=%h %s"], check=False).stdout.strip()
    dirty = run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"], check=False).stdout
    if not rev:
        return "(revision unknown: not a git checkout)"
    return rev[:100] + (" + uncommitted changes" if dirty.strip() else "")


def machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    return f"nproc {os.cpu_count()}, {cpu}, Linux {platform.release()}, Python {platform.python_version()}"


def report(bench: Bench, workloads: list[Workload], started: dt.datetime, elapsed: float) -> str:
    lines = [ln for wl in workloads for ln in lines_for(wl, bench.samples.get(wl.key, []))]
    args = bench.args
    wan = bench.wan.describe() if bench.wan else "not used"
    md = [
        f"### {args.label}: {started:%Y-%m-%d %H:%M} UTC, dlengine {git_revision()}",
        "",
        f"- command: `{shlex.join(['python3', 'bench/datapath.py', *sys.argv[1:]])}` (took {elapsed / 60:.1f} min)",
        f"- machine: {machine()}; **noisy**: 2 cores shared with other engineers' test runs during the run "
        '(see "other CPU s" in the samples: CPU the rest of the machine used meanwhile)',
        f"- server: {first_line(['/usr/sbin/nginx', '-v'])}, 1 worker, sendfile, keep-alive, autoindex; "
        f"capped: `limit_rate {args.limit_rate}` per connection",
        f"- WAN: {wan}",
        f"- written to: {bench.fs or 'the work directory'}",
        f"- peers: {first_line(['rclone', 'version'])}; {first_line(['aria2c', '--version'])}",
        *(f"- {tool}: `{cmd}`" for tool, cmd in PEER_COMMANDS.items()),
        "- WAN workloads: every client command runs in the client namespace (`ip netns exec`), nginx in the other",
        "- each figure: median wall time (process start to exit) of the reps; ratio = peer s / dlengine s "
        "(> 1: dlengine faster), in brackets the range of per-rep ratios (adjacent runs); CPU = user + system "
        "of the whole process tree; `sync` and a wait for a quiet machine before every run",
        "",
        *table(lines),
        "",
        *targets(lines),
        "",
        "Where dlengine's wall time went (medians; from the job's times in the ledger):",
        "",
        *split_table(bench, workloads),
        "",
        "<details><summary>every sample</summary>",
        "",
        *samples_table(bench, workloads),
        "",
        "</details>",
    ]
    return "\n".join(md) + "\n"


def write_results(path: Path, label: str, section: str) -> None:
    """Replace this label's section (between its markers), else add it after
    the first heading's paragraph; the rest of the file is kept."""
    begin, end = f"<!-- datapath.py {label}: begins -->", f"<!-- datapath.py {label}: ends -->"
    block = f"{begin}\n{section}{end}"
    text = path.read_text() if path.exists() else "# dlengine benchmark results\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        anchor = "<!-- datapath.py: generated sections follow -->"
        if anchor not in text:
            title, sep, rest = text.partition("\n\n")
            text = f"{title}{sep}{anchor}\n\n{rest}" if sep else f"{text}\n\n{anchor}\n\n"
        text = text.replace(anchor, f"{anchor}\n\n{block}\n", 1)
    path.write_text(text)


# ---------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    for key, (full, quick, *_rest) in WORKLOADS.items():
        p.add_argument(f"--{key}", type=parse_shape, metavar="NxSIZE", help=f"default {full}; --quick {quick}")
    p.add_argument("--only", default="", help="comma-separated workloads (default: all)")
    p.add_argument("--quick", action="store_true", help="small sizes, 1 rep: under ~2 minutes")
    p.add_argument("--reps", type=int, help="repetitions per workload (default 3; --quick 1)")
    p.add_argument("--long-reps", type=int, default=1, help="repetitions of wan-large (default 1)")
    p.add_argument("--delay-ms", type=float, default=20.0, help="WAN one-way delay (default 20)")
    p.add_argument("--loss", type=float, default=1.0, help="WAN loss in %% each way (default 1)")
    p.add_argument("--wan-rate", type=float, default=0.0, help="WAN MB/s per direction (default 0: none)")
    p.add_argument("--wan-cc", default="reno", help="TCP congestion control in the namespaces (default reno)")
    p.add_argument("--limit-rate", default="8m", help="nginx limit_rate of the capped workload (default 8m)")
    p.add_argument(
        "--quiet-wait", type=float, help="max s to wait for a quiet machine before each run (default 3; --quick 1)"
    )
    p.add_argument("--workdir", type=Path, help="keep data and runs here (default: a temp dir, removed)")
    add_fs_option(p)
    p.add_argument("--label", default="latest", help="results section name, e.g. before / after")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    p.add_argument("--no-results", action="store_true", help="do not write the results file")
    p.add_argument("--json", type=Path, help="write every sample here")
    p.add_argument("--dlengine", default="", help="dlengine command (default: python3 -m dlengine in this checkout)")
    p.add_argument(
        "--venv",
        action="store_true",
        help="measure as a user would: a fresh venv in the work directory with a plain `pip install .` of this"
        " checkout, and its `dlengine` command (the interpreter's own site-packages, e.g. .pth files of this"
        " machine, stay out of the figures)",
    )
    return p


def add_fs_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fs",
        choices=("journaled", "workdir"),
        default="journaled",
        help="where the runs write: journaled (default) = a fresh ext4 with its journal on a loop device, as"
        " most disks are formatted (root only; else the work directory, said in the results); workdir = the"
        " work directory's file system (this machine's root: ext4 without a journal, whose creates slow down"
        " up to ~15x for minutes after any deletion: harness/loopfs.py)",
    )


def runs_on(bench: Bench, stack: contextlib.ExitStack, largest: int) -> None:
    """The runs' file system, per ``--fs``, for workloads of at most
    ``largest`` bytes (a run's objects, twice over: a tool's copy being
    written while the last one is deleted, and the ledgers)."""
    why_not = "asked for (--fs workdir)" if bench.args.fs == "workdir" else loopfs.unavailable()
    mnt = None
    if why_not is None:
        try:
            mnt = stack.enter_context(loopfs.journaled(bench.workdir / "fs", max(4 << 30, 3 * largest)))
        except OSError as exc:
            why_not = str(exc)
    if mnt is None and bench.args.fs == "journaled":
        log(f"--fs journaled: {why_not}; the runs write to the work directory")
    bench.runs, bench.fs = mnt, loopfs.describe(mnt, why_not)


def choose(args: argparse.Namespace) -> list[Workload]:
    only = [k.strip() for k in args.only.split(",") if k.strip()] or list(WORKLOADS)
    unknown = [k for k in only if k not in WORKLOADS]
    if unknown:
        raise SystemExit(f"datapath: --only: unknown workload {', '.join(unknown)} (known: {', '.join(WORKLOADS)})")
    result = []
    for key in only:
        full, quick, wan, peers, long, goal = WORKLOADS[key]
        count, size = getattr(args, key.replace("-", "_")) or parse_shape(quick if args.quick else full)
        result.append(Workload(key, count, size, wan, peers, long, goal))
    return result


def missing_tools(workloads: list[Workload]) -> list[str]:
    need = {"ip", "nginx"} | {p for wl in workloads for p in wl.peers}
    if any(wl.wan for wl in workloads):
        need.add("cc")
    return sorted(
        t for t in need if not shutil.which(t) and not (t == "nginx" and os.access("/usr/sbin/nginx", os.X_OK))
    )


def on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(f"datapath: signal {signum}: cleaning up")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quiet_wait is None:
        args.quiet_wait = 1.0 if args.quick else 3.0
    workloads = choose(args)
    missing = missing_tools(workloads)
    if missing:
        raise SystemExit(f"datapath: not installed: {', '.join(missing)}")
    if any(wl.wan for wl in workloads) and os.geteuid() != 0:
        raise SystemExit("datapath: the WAN workloads create network namespaces: run as root (or --only small,...)")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    started, t0 = dt.datetime.now(dt.timezone.utc), time.monotonic()
    with contextlib.ExitStack() as stack:
        if args.workdir:
            workdir = args.workdir.resolve()
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dlb-datapath-")))
        workdir.chmod(0o755)
        data = workdir / "data"
        data.mkdir(exist_ok=True)
        port = free_port()
        stack.enter_context(nginx(workdir / "nginx-lo", f"127.0.0.1:{port}", data, args.limit_rate))
        lo_url = f"http://127.0.0.1:{port}"
        wait_http(f"{lo_url}/")
        wan = None
        if any(wl.wan for wl in workloads):
            wan = stack.enter_context(Wan(workdir, args.delay_ms, args.loss, args.wan_rate, args.wan_cc))
            stack.enter_context(
                nginx(workdir / "nginx-wan", f"{WAN_SUBNET}.1:{WAN_PORT}", data, args.limit_rate, wan.on_server())
            )
            wait_http(f"{wan.base_url}/", wan.on_client())
        dlengine = shlex.split(args.dlengine) if args.dlengine else [sys.executable, "-m", "dlengine"]
        if args.venv:
            dlengine = [str(fresh_venv(workdir / "venv"))]
        bench = Bench(args, workdir, data, lo_url, wan, dlengine)
        if any(wl.key == "simple" for wl in workloads):
            bench.simple_url = stack.enter_context(simple_server(data))
        runs_on(bench, stack, max((wl.nbytes for wl in workloads), default=0))
        bench.warm_up()
        reps = args.reps or (1 if args.quick else 3)
        for wl in workloads:
            bench.workload(wl, args.long_reps if wl.long and not args.reps else reps)
        shutil.rmtree(workdir / "trash", ignore_errors=True)  # after the last run: see Bench.run_dir
    section = report(bench, workloads, started, time.monotonic() - t0)
    print(section)
    if args.json:
        args.json.write_text(json.dumps({k: [asdict(s) for s in v] for k, v in bench.samples.items()}, indent=1))
    if not args.no_results:
        write_results(args.results, args.label, section)
        log(f"results: {args.results} (section {args.label!r})")
    return 0 if all(s.ok for v in bench.samples.values() for s in v) else 1


if __name__ == "__main__":
    sys.exit(main())

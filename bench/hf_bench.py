#!/usr/bin/env python3
"""dlengine vs ``huggingface_hub.snapshot_download(max_workers=8)`` against
a fake Hub on 127.0.0.1 (``bench/hfhub.py``, its own process) with the LFS
bytes on nginx as the "CDN" (``http://localhost:P``, another origin).

Two repos: many small files (default 2,000 x 1 KiB + README, answered by
the Hub itself) and a few large LFS files (default 6 x 64 MiB). For each,
per repetition, both tools (order alternating) in a fresh home / cache:

1. first download;
2. re-run with nothing changed;
3. re-run after a commit that changes one file.

Timed per step: wall clock and CPU (user + sys of every child process) of

- dlengine: ``dlengine download --hf-dataset R ais://b --no-start``, then
  ``dlengine run`` only if the download left something to do (a download
  with nothing to do ends in the command);
- huggingface_hub: ``python -c "snapshot_download(R, repo_type='dataset',
  max_workers=8)"`` with its own ``HF_HUB_CACHE``.

and the Hub requests each step sent (info / tree pages / HEAD / GET). The
downloaded bytes are checked (sha256) after the last step. Figures go to
the end of ``bench/RESULTS-hf.md`` (a section of their own, with the
command line; the rest of the file is kept).

    python3 bench/hf_bench.py [--reps 3] [--small 2000] [--lfs 6] [--lfs-mib 64] [--only small|lfs] [--cdn-rate 8m]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import Server, add_settings, clean_env, free_port, log  # noqa: E402  (bench/bench.py, beside this file)
from harness.scratch import set_aside  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS-hf.md"
STEPS = ("first download", "unchanged re-run", "one-file commit")
TOOLS = ("dlengine", "snapshot_download")
_HF = {"HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
_SNAPSHOT = (
    "import sys\nfrom huggingface_hub import snapshot_download\n"
    "snapshot_download(sys.argv[1], repo_type='dataset', max_workers=8)\n"
)


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass
class Repo:
    """One repo of the fake Hub: its commits, written to the Hub's state."""

    repo_id: str
    workdir: Path
    cdn_root: Path
    commits: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    expected: dict[str, str] = field(default_factory=dict)  # path -> sha256 at the head

    def commit(self, files: dict[str, bytes], lfs: bool) -> str:
        """A new head holding the previous tree with ``files`` added or changed."""
        tree = dict(self.commits[max(self.commits)]) if self.commits else {}
        for path, data in files.items():
            sha256 = hashlib.sha256(data).hexdigest()
            big = lfs and path != "README.md"
            if big:
                (self.cdn_root / "lfs" / sha256).write_bytes(data)
                tree[path] = [len(data), git_blob_id(data), sha256, None]
            else:
                content = self.workdir / "content" / sha256
                content.parent.mkdir(parents=True, exist_ok=True)
                content.write_bytes(data)
                tree[path] = [len(data), git_blob_id(data), None, str(content)]
            self.expected[path] = sha256
        sha = hashlib.sha1(f"{self.repo_id}:{len(self.commits)}".encode(), usedforsecurity=False).hexdigest()
        self.commits[f"{len(self.commits):04d}-{sha}"] = tree
        return sha

    def state(self, upto: int) -> dict[str, Any]:
        """The Hub's state with ``main`` at commit number ``upto``."""
        names = sorted(self.commits)[: upto + 1]
        commits = {name.split("-", 1)[1]: self.commits[name] for name in names}
        return {"refs": {"main": names[-1].split("-", 1)[1]}, "commits": commits}


class Hub:
    """``bench/hfhub.py`` in a subprocess."""

    def __init__(self, workdir: Path, cdn: str) -> None:
        self.port = free_port()
        self.state = workdir / "hub-state.json"
        self.state.write_text(json.dumps({"repos": {}}))
        self.repos: dict[str, dict[str, Any]] = {}
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, str(ROOT / "bench" / "hfhub.py"), "--port", str(self.port), "--cdn", cdn]
        self.proc = subprocess.Popen([*cmd, "--state", str(self.state)], stdout=subprocess.DEVNULL, env=clean_env())
        deadline = time.monotonic() + 20
        while True:
            try:
                self.stats()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise SystemExit("bench: the fake Hub did not start") from None
                time.sleep(0.05)

    def _call(self, method: str, path: str) -> Any:
        request = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=30) as response:
            return json.loads(response.read())

    def publish(self, repos: dict[str, dict[str, Any]]) -> None:
        """These repos at these states (the others unchanged)."""
        self.repos.update(repos)
        self.state.write_text(json.dumps({"repos": self.repos}))
        self._call("POST", "/_bench/reload")

    def reset(self) -> None:
        self._call("POST", "/_bench/reset")

    def stats(self) -> dict[str, int]:
        found: dict[str, int] = self._call("GET", "/_bench/stats")
        return found

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def timed(cmds: list[list[str]], env: dict[str, str], cwd: Path) -> tuple[float, float, list[str]]:
    """(wall s, CPU s of the children, stdout of each) of commands run in turn."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    outputs = []
    for cmd in cmds:
        res = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=1800)
        if res.returncode != 0:
            raise SystemExit(f"bench: {' '.join(cmd)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
        outputs.append(res.stdout)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, outputs


WAIT = False  # --wait: one `download --wait` per step instead of `download --no-start` + `run`
SETTINGS: dict[str, str] = {}  # --env: dlengine settings of every run (the environment's own are not passed on)


def run_dlengine(home: Path, hub: Hub, repo_id: str) -> tuple[float, float]:
    """``download --no-start``; then ``run`` only if a job was left active.
    With ``--wait``: ``download --wait`` (a few files downloaded in the
    command; more by a background supervisor, whose CPU is not counted:
    it is no child)."""
    env = clean_env({"DLENGINE_HOME": str(home), "HF_ENDPOINT": hub.url, "HF_HOME": str(home / "hf"), **_HF})
    env.update(SETTINGS)
    dl = [sys.executable, "-m", "dlengine"]
    if WAIT:
        env["DLENGINE_LINGER"] = "0.3"  # a background supervisor is gone before the next step
        wall, cpu, _ = timed([[*dl, "download", "--hf-dataset", repo_id, "ais://bench", "--wait", "--json"]], env, ROOT)
        time.sleep(0.8)
        return wall, cpu
    download = [*dl, "download", "--hf-dataset", repo_id, "ais://bench", "--no-start", "--json"]
    wall, cpu, [out] = timed([download], env, ROOT)
    ids = json.loads(out)["ids"]
    if _active(home, ids):
        more_wall, more_cpu, _ = timed([[*dl, "run"]], env, ROOT)
        log(
            f"    dlengine: download {wall:.2f} s wall {cpu:.2f} s CPU,"
            f" then run {more_wall:.2f} s wall {more_cpu:.2f} s CPU"
        )
        wall, cpu = wall + more_wall, cpu + more_cpu
    return wall, cpu


def _active(home: Path, ids: list[str]) -> bool:
    """Whether a job still has work (read here, not timed)."""
    from dlengine.ledger.ledger import Ledger
    from dlengine.ledger.states import ACTIVE_JOB_STATES

    ledger = Ledger.open(home / "ledger.db")
    try:
        return any(job.state in ACTIVE_JOB_STATES for job in ledger.jobs_by_id(ids))
    finally:
        ledger.close()


def run_snapshot(cache: Path, hub: Hub, repo_id: str) -> tuple[float, float]:
    env = clean_env({"HF_HUB_CACHE": str(cache), "HF_HOME": str(cache.parent / "hf"), "HF_ENDPOINT": hub.url, **_HF})
    env.pop("HF_TOKEN", None)
    wall, cpu, _ = timed([[sys.executable, "-c", _SNAPSHOT, repo_id]], env, cache.parent)
    return wall, cpu


def verify(tool: str, where: Path, repo: Repo) -> None:
    """Every file of the head, byte for byte (sha256)."""
    if tool == "dlengine":
        root = where / "data" / "ais" / "bench"
    else:
        snapshots = list((where / f"datasets--{repo.repo_id.replace('/', '--')}" / "snapshots").iterdir())
        root = max(snapshots, key=lambda p: p.stat().st_mtime)
    for path, sha256 in repo.expected.items():
        got = hashlib.sha256((root / path).read_bytes()).hexdigest()
        if got != sha256:
            raise SystemExit(f"bench: {tool}: {path} differs from the Hub's")


def make_repos(args: argparse.Namespace, workdir: Path, cdn_root: Path) -> dict[str, tuple[Repo, bool]]:
    """name -> (repo with two commits: the base, one file changed; LFS?)."""
    repos: dict[str, tuple[Repo, bool]] = {}
    if args.only in (None, "small"):
        small = Repo("bench/small", workdir / "small", cdn_root)
        files = {f"data/{i // 250:02d}/f-{i:05d}.txt": os.urandom(args.small_size) for i in range(args.small)}
        small.commit({"README.md": b"# small files\n", **files}, lfs=False)
        small.commit({"data/00/f-00007.txt": os.urandom(args.small_size)}, lfs=False)
        repos["small"] = (small, False)
    if args.only in (None, "lfs"):
        big = Repo("bench/lfs", workdir / "lfs", cdn_root)
        size = args.lfs_mib << 20
        big.commit(
            {"README.md": b"# large files\n", **{f"shard-{i}.bin": os.urandom(size) for i in range(args.lfs)}}, True
        )
        big.commit({"shard-1.bin": os.urandom(size)}, lfs=True)
        repos["lfs"] = (big, True)
    return repos


def one_rep(
    rep: int, hub: Hub, name: str, repo: Repo, scratch: Path
) -> dict[tuple[str, str], tuple[float, float, dict[str, int]]]:
    """Both tools through the three steps; (tool, step) -> (wall, cpu, requests)."""
    out: dict[tuple[str, str], tuple[float, float, dict[str, int]]] = {}
    order = TOOLS if rep % 2 == 0 else TOOLS[::-1]
    places = {"dlengine": scratch / f"home-{name}", "snapshot_download": scratch / f"hfcache-{name}" / "hub"}
    for path in places.values():
        set_aside(path.parent if path.name == "hub" else path, scratch / "trash")  # see harness/scratch.py
        path.mkdir(parents=True)
    for step_no, step in enumerate(STEPS):
        if step_no == 2:
            hub.publish({f"dataset:{repo.repo_id}": repo.state(1)})
        for tool in order:
            hub.reset()
            runner = run_dlengine if tool == "dlengine" else run_snapshot
            wall, cpu = runner(places[tool], hub, repo.repo_id)
            out[(tool, step)] = (wall, cpu, hub.stats())
            log(f"  rep {rep + 1} {name} {step}: {tool} {wall:.2f} s wall, {cpu:.2f} s CPU, requests {hub.stats()}")
    for tool in TOOLS:
        verify(tool, places[tool], repo)
    hub.publish({f"dataset:{repo.repo_id}": repo.state(0)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--small", type=int, default=2000, help="small files in the small repo (+ README)")
    parser.add_argument("--small-size", type=int, default=1024)
    parser.add_argument("--lfs", type=int, default=6, help="LFS files in the large repo (+ README)")
    parser.add_argument("--lfs-mib", type=int, default=64)
    parser.add_argument("--only", choices=("small", "lfs"))
    parser.add_argument("--no-write", action="store_true", help="do not write bench/RESULTS-hf.md")
    parser.add_argument("--wait", action="store_true", help="dlengine as `download --wait` (one command per step)")
    parser.add_argument(
        "--cdn-rate",
        default="",
        metavar="RATE",
        help="cap every connection to the CDN at RATE (nginx limit_rate, e.g. 8m), as CDNs and mirrors do",
    )
    add_settings(parser)
    args = parser.parse_args()
    global WAIT
    WAIT = args.wait
    SETTINGS.update(args.env)
    with tempfile.TemporaryDirectory(prefix="dlengine-hfbench-") as tmp:
        work = Path(tmp)
        cdn_root = work / "cdn"
        (cdn_root / "lfs").mkdir(parents=True)
        repos = make_repos(args, work, cdn_root)
        for path in [cdn_root, cdn_root / "lfs", *(cdn_root / "lfs").iterdir()]:
            path.chmod(0o755)  # the nginx worker may run as another user
        probe = next((cdn_root / "lfs").iterdir(), None)
        if probe is None:
            (cdn_root / "lfs" / "probe").write_bytes(b"probe")
            probe = cdn_root / "lfs" / "probe"
        server = Server("nginx", cdn_root, work)
        server.limit_rate = args.cdn_rate
        server.start(f"/lfs/{probe.name}")
        hub = Hub(work, f"http://localhost:{server.port}")
        try:
            hub.publish({f"dataset:{r.repo_id}": r.state(0) for r, _ in repos.values()})
            results = {
                name: [one_rep(rep, hub, name, repo, work / "runs") for rep in range(args.reps)]
                for name, (repo, _) in repos.items()
            }
        finally:
            hub.stop()
            server.stop()
    text = report(args, results)
    print(text)
    if not args.no_write:
        save(text)


def save(text: str) -> None:
    """The run's report at the end of bench/RESULTS-hf.md, as a section of
    its own: the file's earlier runs and hand-written notes are kept."""
    if not RESULTS.exists():
        RESULTS.write_text(text)
        return
    title, _, body = text.partition("\n")
    stamp = f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"
    section = f"## {title.lstrip('# ')} ({stamp}, generated)\n{body}"
    RESULTS.write_text(RESULTS.read_text().rstrip("\n") + "\n\n" + section)


def report(
    args: argparse.Namespace, results: dict[str, list[dict[tuple[str, str], tuple[float, float, dict[str, int]]]]]
) -> str:
    lines = [
        "# HF Hub: dlengine vs huggingface_hub.snapshot_download(max_workers=8)",
        "",
        f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.node()} "
        f"({os.cpu_count()} CPUs, shared), Python {platform.python_version()}, "
        f"huggingface_hub {_hf_version()}. Command:",
        "",
        "    python3 bench/hf_bench.py " + " ".join(sys.argv[1:]),
        "",
        "Fake Hub `bench/hfhub.py` (own process) on 127.0.0.1, LFS bytes on nginx at `http://localhost:P`"
        + (f" (`limit_rate {args.cdn_rate}`: each connection capped)." if args.cdn_rate else "."),
        *(
            [
                "dlengine: `dlengine download --hf-dataset R ais://bench --wait` (up to DLENGINE_INLINE files in the",
                "command itself, more by a background supervisor, whose CPU is not counted); default workers/threads.",
            ]
            if WAIT
            else [
                "dlengine: `dlengine download --hf-dataset R ais://bench --no-start`, then `dlengine run` only when",
                "the download left work (a download with nothing to do ends in the command); default workers/threads.",
            ]
        ),
        "Both in a fresh home / cache per repetition, order alternating. Median (min-max) of",
        f"{args.reps} repetitions; ratio = dlengine time / snapshot_download time (< 1: dlengine faster);",
        "requests = what the Hub received in that step (info + tree pages + HEAD + GET to the Hub; CDN not counted).",
        "",
        "| repo | step | dlengine wall | snapshot_download wall | ratio | dlengine CPU | snapshot CPU"
        " | Hub requests dlengine / snapshot |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, reps in results.items():
        for step in STEPS:
            walls = {t: [r[(t, step)][0] for r in reps] for t in TOOLS}
            cpus = {t: [r[(t, step)][1] for r in reps] for t in TOOLS}
            reqs = {t: sum(reps[-1][(t, step)][2].values()) for t in TOOLS}
            ratio = statistics.median(walls["dlengine"]) / statistics.median(walls["snapshot_download"])
            cells = [_describe(name, args), step, _spread(walls["dlengine"]), _spread(walls["snapshot_download"])]
            cells += [f"{ratio:.2f}x", f"{statistics.median(cpus['dlengine']):.2f} s"]
            cells += [f"{statistics.median(cpus['snapshot_download']):.2f} s"]
            cells += [f"{reqs['dlengine']} / {reqs['snapshot_download']}"]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Requests by kind in the last repetition:", ""]
    for name, reps in results.items():
        for step in STEPS:
            kinds = {t: reps[-1][(t, step)][2] for t in TOOLS}
            lines.append(
                f"- {name}, {step}: dlengine {kinds['dlengine']}; snapshot_download {kinds['snapshot_download']}"
            )
    return "\n".join(lines) + "\n"


def _describe(name: str, args: argparse.Namespace) -> str:
    if name == "small":
        return f"{args.small + 1} small files ({args.small_size} B)"
    return f"{args.lfs} x {args.lfs_mib} MiB LFS + README"


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


def _hf_version() -> str:
    try:
        import huggingface_hub

        return str(huggingface_hub.__version__)
    except ImportError:
        return "not installed"


if __name__ == "__main__":
    main()

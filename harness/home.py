"""A dlengine home driven from outside, as a user would: ``Home`` runs the
CLI (``python -m dlengine``) with its own ``DLENGINE_HOME``, spawns and kills
supervisors, and reads the ledger and the mountpaths. Shared by the tests
(``tests/conftest.py``'s ``home`` fixture) and the bench (``bench/chaos.py``)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dlengine.client import Client

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Home:
    """One DLENGINE_HOME with its environment, and helpers to drive it."""

    path: Path
    env: dict[str, str]
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def mountpaths(self) -> list[Path]:
        raw = self.env.get("DLENGINE_MOUNTPATHS")
        return [Path(p) for p in raw.split(":")] if raw else [self.path / "data"]

    def cli(self, *args: str, timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``dlengine ARGS`` to completion."""
        return subprocess.run(
            [sys.executable, "-m", "dlengine", *args],
            env=self.env, capture_output=True, text=True, timeout=timeout, input=input, cwd=ROOT,
        )  # fmt: skip

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        """Start ``dlengine ARGS`` in its own process group (killed at teardown)."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "dlengine", *args],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            start_new_session=True,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def site_hook(self, directory: Path, source: str, **env: str) -> None:
        """Every Python process of this home runs ``source`` at its start
        (a ``sitecustomize`` module in ``directory``, first on its path),
        with ``env`` in its environment: a test's way into a worker."""
        directory.mkdir()
        (directory / "sitecustomize.py").write_text(source)
        self.env["PYTHONPATH"] = f"{directory}{os.pathsep}{ROOT}"
        self.env.update(env)

    def submit(self, job: dict[str, Any], *extra: str) -> str:
        res = self.cli("submit", "-", "--no-start", *extra, input=json.dumps(job))
        assert res.returncode == 0, res.stderr
        return res.stdout.strip().splitlines()[-1]

    def run(self, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.cli("run", *extra, timeout=timeout)

    def status(self, job_id: str) -> dict[str, Any]:
        """What ``dlengine show ID --json`` prints, read by the same code
        (``Client.status``) in this process: tests ask for it often, in
        loops, and a CLI process each time cost ~0.5 s; ``show_json`` is
        the CLI's own answer."""
        with self._client() as client:
            shown = dict(client.status(job_id))
        shown.pop("spec", None)  # as show --json leaves it out
        data: dict[str, Any] = json.loads(json.dumps(shown))  # JSON's types, as the CLI prints them
        return data

    @contextmanager
    def _client(self) -> Iterator[Client]:
        """dlengine's ``Client`` over this home's environment, in this process."""
        from dlengine.client import Client
        from dlengine.config import load_settings

        client = Client(load_settings(self.env))
        try:
            yield client
        finally:
            client.close()

    def show_json(self, job_id: str) -> dict[str, Any]:
        """``dlengine show ID --json``, run as a process."""
        res = self.cli("show", job_id, "--json")
        assert res.returncode == 0, res.stderr
        data: dict[str, Any] = json.loads(res.stdout)
        return data

    def ls(self, bucket: str) -> dict[str, int | None]:
        """Name -> size of what ``dlengine ls BUCKET --json`` lists, read in
        this process (as ``status``)."""
        with self._client() as client:
            return {e["name"]: e["size"] for e in client.list_bucket(bucket)}

    def find(self, provider: str, bucket: str, name: str) -> Path | None:
        """The stored file of an object, on whichever mountpath holds it."""
        for mp in self.mountpaths:
            path = mp / provider / bucket / name
            if path.exists():
                return path
        return None

    def visible_files(self) -> list[Path]:
        """Every file under the mountpaths except work files (and the mark
        naming the home a mountpath belongs to)."""
        return [
            p
            for mp in self.mountpaths
            if mp.exists()
            for p in mp.rglob("*")
            if p.is_file() and ".work" not in p.parts and p.name != ".dlengine-home"  # the mountpath's owner
        ]

    def work_files(self) -> list[Path]:
        return [p for mp in self.mountpaths for p in (mp / ".work").glob("*") if (mp / ".work").exists()]

    def ledger(self) -> sqlite3.Connection:
        """A connection to this home's ledger (for reading rows and counters)."""
        from dlengine.ledger import db

        return db.connect(self.path / "ledger.db")

    def kill(
        self, proc: subprocess.Popen[str], timeout: float = 20, signalled: Callable[[], None] | None = None
    ) -> None:
        """SIGKILL ``proc``'s whole process group (a ``spawn``ed supervisor and
        its workers) and wait until none of its processes is left running.
        ``signalled`` runs as soon as the signal is sent: from then on no code
        of the group runs, though a process can take a while to die (until
        the system call it is in, such as a ``syncfs``, returns)."""
        _kill_group(proc.pid)
        if signalled is not None:
            signalled()
        proc.communicate(timeout=timeout)  # reap it and drain its pipes
        wait_for(lambda: not group_members(proc.pid), timeout=timeout)

    def stop_all(self) -> None:
        for proc in self.procs:
            _kill_group(proc.pid)
            proc.wait(10)
        pid = _lock_holder(self.path)
        if pid:
            _kill_group(pid)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _proc_stat(pid: str) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    pids = []
    for entry in os.listdir("/proc"):
        fields = _proc_stat(entry) if entry.isdigit() else None
        if fields and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            pids.append(int(entry))
    return pids


def worker_pids(supervisor_pid: int) -> list[int]:
    """Worker processes of a supervisor: its children running the worker."""
    pids = []
    for entry in os.listdir("/proc"):
        fields = _proc_stat(entry) if entry.isdigit() else None
        if not fields or fields[1] != str(supervisor_pid) or fields[0] in ("Z", "X"):
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if b"dlengine.supervisor.worker" in cmdline or _comm(entry) == "dlengine-worker":  # spawned, or forked
            pids.append(int(entry))
    return pids


def _comm(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def counters_match_rows(conn: sqlite3.Connection, job_id: str) -> None:
    """The job's counters equal its rows counted by state."""
    from dlengine.ledger import jobs
    from dlengine.ledger.states import ObjectState

    row = jobs.job_row(conn, job_id)
    counted = jobs.count_by_state(conn, row["seq"])
    for state in ObjectState:
        assert row[f"{'failed' if state is ObjectState.FAILED else state.value}_cnt"] == counted[state.value], state


def _lock_holder(home: Path) -> int | None:
    """Pid of a supervisor still holding this home's lock, if any."""
    import fcntl

    lock = home / "supervisor.lock"
    if not lock.exists():
        return None
    with open(lock, "r+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return None
        except BlockingIOError:
            text = fh.read().strip()
            return int(text) if text.isdigit() else None


def new_home(path: Path) -> Home:
    """A Home at ``path`` with the test defaults (1 worker of 4 threads)."""
    env = dict(os.environ)
    env.pop("DLENGINE_MOUNTPATHS", None)
    env.update(
        DLENGINE_HOME=str(path),
        DLENGINE_LINGER="0.5",
        DLENGINE_THREADS="4",
        DLENGINE_WORKERS="1",
        PYTHONPATH=str(ROOT),
    )
    env.update(HF_ENV)
    env["HF_HOME"] = str(path / "hf-home")  # no stored token, no cache of the user's
    env.pop("HF_TOKEN", None)
    return Home(path, env)


# Never the real Hub: huggingface_hub reads HF_ENDPOINT when imported (tests
# that use the fake Hub set theirs), and must not switch to Xet.
HF_ENV = {
    "HF_ENDPOINT": "http://127.0.0.1:9",
    "HF_HUB_DISABLE_XET": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


def wait_for(predicate: Any, timeout: float = 30, interval: float = 0.05) -> Any:
    """Poll until ``predicate()`` is truthy; return its value or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")

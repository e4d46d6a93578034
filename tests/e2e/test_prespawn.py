"""``run`` forks its workers before it imports the rest of itself
(``supervisor.prespawn``): the workers it runs are those spares, a spare
nobody takes exits without a word, and only a local ``run`` of a free home
makes spares."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from harness.httpd import Fault, TestHTTPServer
from tests.conftest import ROOT, Home, _lock_holder, wait_for, worker_pids

# early() in a fresh single-threaded process, as the command line calls it;
# prints how many spares it made and how each one that nobody took ended
_PROBE = """
import json, sys
from dlengine.supervisor import prespawn
prespawn.early(sys.argv[1:])
spares = list(prespawn._spares)
prespawn.discard()
print(json.dumps({"spares": len(spares), "codes": [s.returncode for s in spares]}))
"""


def _probe(home: Home, *argv: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv], env=home.env, capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert out.returncode == 0 and out.stderr == "", out.stderr
    result: dict[str, object] = json.loads(out.stdout)
    return result


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def _slow(httpd: TestHTTPServer, *names: str, rate: int = 200_000) -> dict[str, str]:
    """Links of 400 KB objects sent at ``rate`` bytes a second (at 200,000
    two seconds: the workers are there to look at)."""
    for seed, name in enumerate(names):
        httpd.put_generated(f"/{name}", 400_000, seed=seed)
        httpd.set_fault(f"/{name}", Fault(rate=rate))
    return {name: f"{httpd.url}/{name}" for name in names}


def _workers_until_it_ends(runner: subprocess.Popen[str]) -> list[list[int]]:
    """The worker pids of ``runner`` every 20 ms until it exits."""
    seen = []
    while runner.poll() is None:
        seen.append(worker_pids(runner.pid))
        time.sleep(0.02)
    return seen


def test_the_workers_of_run_are_its_spares(home: Home, httpd: TestHTTPServer) -> None:
    """Two objects of unknown size (links: they may be large files) use
    both workers from the start, both forked spares."""
    home.env["DLENGINE_WORKERS"] = "2"
    job_id = home.submit({"type": "multi", "bucket": {"name": "b"}, "objects": _slow(httpd, "s1.bin", "s2.bin")})
    runner = home.spawn("run", "--quiet")
    pids = wait_for(lambda: len(worker_pids(runner.pid)) == 2 and worker_pids(runner.pid), timeout=60)
    assert [_comm(pid) for pid in pids] == ["dlengine-worker"] * 2  # forked, not started as interpreters
    assert runner.wait(60) == 0, runner.stderr.read() if runner.stderr else ""
    assert home.status(job_id)["finished_cnt"] == 2


def test_a_one_object_run_forks_and_uses_one_worker(home: Home, httpd: TestHTTPServer) -> None:
    """Issue 17: a job of one object pays for one worker, not for as many
    as the cores allow (``supervisor.sizing``)."""
    home.env["DLENGINE_WORKERS"] = "2"
    (link,) = _slow(httpd, "one.bin").values()
    job_id = home.submit({"type": "single", "bucket": {"name": "b"}, "link": link})
    assert _probe(home, "run", "--quiet")["spares"] == 1
    runner = home.spawn("run", "--quiet")
    pids = wait_for(lambda: worker_pids(runner.pid), timeout=60)
    assert [_comm(pid) for pid in pids] == ["dlengine-worker"]  # the spare
    seen = _workers_until_it_ends(runner)
    assert runner.returncode == 0, runner.stderr.read() if runner.stderr else ""
    assert max(len(pids) for pids in seen) == 1, seen  # (1.5 s of looks: never a second one)
    assert home.status(job_id)["finished_cnt"] == 1


def test_spares_for_what_is_queued(home: Home) -> None:
    """As many spares as the queued rows can use, at most the pools' size;
    a range still to be dispatched (its rows not in the ledger yet) gets
    them all."""
    home.env["DLENGINE_WORKERS"] = "3"
    link = "http://127.0.0.1:9/{}.bin"  # (never asked: the spares are discarded)
    home.submit({"type": "single", "bucket": {"name": "b"}, "link": link.format("x")})
    assert _probe(home, "run", "--quiet")["spares"] == 1
    home.submit({"type": "multi", "bucket": {"name": "b"}, "objects": {"y": link.format("y")}})
    assert _probe(home, "run", "--quiet")["spares"] == 2
    home.submit({"type": "range", "bucket": {"name": "r"}, "template": link.format("r{1..40}")})
    assert _probe(home, "run", "--quiet")["spares"] == 3


def test_a_lingering_supervisor_grows_to_every_worker_for_a_larger_job(home: Home, httpd: TestHTTPServer) -> None:
    """A supervisor that started with one worker for one object starts the
    others (fresh interpreters) once a job that can use them comes, and
    they share its rows."""
    home.env["DLENGINE_WORKERS"] = "2"
    links = _slow(httpd, "first.bin", *(f"m{i}.bin" for i in range(8)))
    first = home.submit({"type": "single", "bucket": {"name": "b"}, "link": links.pop("first.bin")})
    runner = home.spawn("run", "--linger", "60", "--quiet")
    try:
        (spare,) = wait_for(lambda: worker_pids(runner.pid), timeout=60)
        time.sleep(0.5)  # (a tick or two: still one)
        assert worker_pids(runner.pid) == [spare]
        second = home.submit({"type": "multi", "bucket": {"name": "c"}, "objects": links})
        pids = wait_for(lambda: len(worker_pids(runner.pid)) == 2 and worker_pids(runner.pid), timeout=30)
        assert spare in pids
        conn = home.ledger()
        sql = "SELECT count(DISTINCT owner) FROM objects o JOIN jobs j ON j.seq = o.job"
        sql += " WHERE j.id = ? AND o.state = 'running'"
        wait_for(lambda: conn.execute(sql, (second,)).fetchone()[0] == 2, timeout=30)  # both workers have a share
        wait_for(lambda: home.status(second)["finished_cnt"] == 8, timeout=60)
        assert home.status(first)["finished_cnt"] == 1
        conn.close()
    finally:
        home.kill(runner)


def _thread_names(pid: int) -> set[str]:
    names = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            names.add((task / "comm").read_text().strip())
        except OSError:
            pass  # (a thread that ended meanwhile)
    return names


def test_a_workers_threads_are_named(home: Home, httpd: TestHTTPServer) -> None:
    """What ``top -H`` and ``bench/floors.py`` tell the threads apart by."""
    httpd.put_generated("/slow.bin", 400_000, seed=2)
    httpd.set_fault("/slow.bin", Fault(rate=200_000))
    home.env["DLENGINE_WORKERS"] = "1"
    job_id = home.submit({"type": "single", "bucket": {"name": "b"}, "link": httpd.url + "/slow.bin"})
    runner = home.spawn("run", "--quiet")
    pids = wait_for(lambda: worker_pids(runner.pid), timeout=60)
    names = wait_for(lambda: {"dl-curl", "dl-sync"} <= (n := _thread_names(pids[0])) and n, timeout=30)
    assert "dlengine-worker" in names  # the ledger thread keeps the process's name
    assert runner.wait(60) == 0, runner.stderr.read() if runner.stderr else ""
    assert home.status(job_id)["finished_cnt"] == 1


def test_spares_nobody_takes_exit_quietly(home: Home) -> None:
    home.env["DLENGINE_WORKERS"] = "2"
    objects = {"x": "http://127.0.0.1:9/x.bin", "y": "http://127.0.0.1:9/y.bin"}  # work to fork for
    home.submit({"type": "multi", "bucket": {"name": "b"}, "objects": objects})
    assert _probe(home, "run", "--quiet") == {"spares": 2, "codes": [0, 0]}


def test_spares_are_forked_with_the_modules_they_need_once_taken(home: Home) -> None:
    """The worker's modules and the pool's (a spare's log format and its
    settings, read once it has its arguments) are imported before the
    fork, once for every spare, not by each spare after it was taken."""
    home.submit({"type": "single", "bucket": {"name": "b"}, "link": "http://127.0.0.1:9/x.bin"})
    code = "import sys\nfrom dlengine.supervisor import prespawn\nprespawn.early(['run'])\n"
    code += "print(len(prespawn._spares), *sorted(m for m in sys.modules if m.startswith('dlengine.supervisor.')))\n"
    code += "prespawn.discard()"
    out = subprocess.run(
        [sys.executable, "-c", code], env=home.env, capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    spares, *modules = out.stdout.split()
    assert int(spares) >= 1  # (the control: it forked)
    assert {"dlengine.supervisor.pool", "dlengine.supervisor.worker"} <= set(modules)


# run in a fresh process, saying at each spare taken whether the dispatcher's modules are imported yet
_TAKEN = """
import sys
from dlengine.supervisor import prespawn
take = prespawn.take
def taking(args):
    print("dispatch" if "dlengine.supervisor.dispatch" in sys.modules else "none")
    return take(args)
prespawn.take = taking
from dlengine.cli import main
print(main(["run", "--quiet"]))
"""


def test_spares_get_their_arguments_before_the_dispatcher_is_imported(home: Home, httpd: TestHTTPServer) -> None:
    """The dispatcher's modules (the spec parser, the listers) are imported
    once the workers were handed their arguments, while they start, not
    on the way to that."""
    httpd.put("/d/1.bin", b"a" * 1000)
    job_id = home.submit({"type": "range", "bucket": {"name": "b"}, "template": httpd.url + "/d/{1..1}.bin"})
    out = subprocess.run(
        [sys.executable, "-c", _TAKEN], env=home.env, capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["none", "0"], out.stderr  # one spare taken (one worker), the run's exit code
    assert home.status(job_id)["done_cnt"] == 1


def test_no_spares_and_no_workers_when_nothing_is_busy(home: Home, httpd: TestHTTPServer) -> None:
    """A cron ``run`` with nothing to do forks no spares and starts no
    worker; a supervisor idle so far starts its workers once a job comes."""
    home.env["DLENGINE_WORKERS"] = "2"
    assert _probe(home, "run", "--quiet")["spares"] == 0  # no ledger yet
    httpd.put_generated("/a.bin", 1000, seed=3)
    first = home.submit({"type": "single", "bucket": {"name": "b"}, "link": httpd.url + "/a.bin"})
    assert home.run("--quiet").returncode == 0
    assert home.status(first)["finished_cnt"] == 1
    assert _probe(home, "run", "--quiet")["spares"] == 0  # every job ended
    runner = home.spawn("run", "--linger", "60", "--quiet")
    try:
        wait_for(lambda: _lock_holder(home.path) == runner.pid, timeout=60)
        assert worker_pids(runner.pid) == []
        httpd.put_generated("/b.bin", 1000, seed=4)
        second = home.submit({"type": "single", "bucket": {"name": "b"}, "link": httpd.url + "/b.bin"})
        wait_for(lambda: home.status(second)["finished_cnt"] == 1, timeout=60)
        assert len(worker_pids(runner.pid)) == 1  # started for it (a fresh interpreter: no spares were forked)
    finally:
        home.kill(runner)


def test_spares_only_for_a_local_run_of_a_free_home(home: Home, httpd: TestHTTPServer) -> None:
    home.env["DLENGINE_WORKERS"] = "1"
    for argv in (["submit", "job.json"], ["run", "--executor", "dask://127.0.0.1:1"], []):
        assert _probe(home, *argv)["spares"] == 0, argv
    httpd.put_generated("/slow2.bin", 400_000, seed=2)
    httpd.set_fault("/slow2.bin", Fault(rate=100_000))
    home.submit({"type": "single", "bucket": {"name": "b"}, "link": httpd.url + "/slow2.bin"})
    first = home.spawn("run", "--quiet")
    wait_for(lambda: _lock_holder(home.path) == first.pid, timeout=60)
    assert _probe(home, "run", "--quiet")["spares"] == 0  # another supervisor holds the home
    assert first.wait(60) == 0
    home.submit({"type": "single", "bucket": {"name": "b"}, "link": httpd.url + "/slow2.bin"})
    assert _probe(home, "run", "--quiet")["spares"] == 1  # the control: free again (and a job busy)

"""A small job followed by its command (``download --wait``) is downloaded
inside the command (``supervisor.inline``): no supervisor, no worker
processes; the same leases, so a ``kill -9`` of the command leaves rows
that the next ``run`` gives back and resumes. Bigger jobs, and any job
while a supervisor holds the home, go to the supervisor as before."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
import uuid

from harness.cloud_servers import S3Server
from harness.fakehub import FakeHub
from harness.httpd import Fault, TestHTTPServer
from tests.conftest import ROOT, Home, counters_match_rows, wait_for

CHUNK = 1 << 20


def _lock_pid(home: Home) -> int:
    """The pid the last holder of the home's lock wrote (a supervisor's, or
    the command's that ran its job inside)."""
    return int((home.path / "supervisor.lock").read_text().strip())


def _wait_cli(home: Home, *args: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """``dlengine ARGS`` to completion, and its pid."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlengine", *args],
        env=home.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), proc.pid


def test_a_few_objects_are_downloaded_in_the_command(home: Home, httpd: TestHTTPServer) -> None:
    httpd.put("/i/a.bin", b"alpha" * 1000)
    httpd.put("/i/b.bin", b"beta")
    res, pid = _wait_cli(home, "download", f"{httpd.url}/i/a.bin", "ais://abc", "--wait")
    assert res.returncode == 0, res.stderr
    assert "1/1 objects stored" in res.stderr
    assert _lock_pid(home) == pid  # the command held the home: no supervisor was started
    assert home.find("ais", "abc", "a.bin").read_bytes() == b"alpha" * 1000  # type: ignore[union-attr]
    log = (home.path / "supervisor.log").read_text()
    assert "objects stored" in log  # logged where a supervisor logs it
    assert (home.path / "supervisor.log").stat().st_mode & 0o077 == 0
    # a failure is reported and logged as with a supervisor; nothing left running
    res, pid = _wait_cli(home, "download", f"{httpd.url}/i/none.bin", "ais://abc", "--wait")
    assert res.returncode == 1 and "none.bin" in res.stderr and "404" in res.stderr
    assert _lock_pid(home) == pid
    job_id = res.stdout.strip().splitlines()[-1]
    assert f"job {job_id}: none.bin failed" in (home.path / "supervisor.log").read_text()
    counters_match_rows(home.ledger(), job_id)
    # the same link again: the stored copy confirmed (a 304), in the command too
    res, pid = _wait_cli(home, "download", f"{httpd.url}/i/a.bin", "ais://abc", "--wait")
    assert res.returncode == 0 and _lock_pid(home) == pid, res.stderr
    assert home.status(res.stdout.strip().splitlines()[-1])["skipped_cnt"] == 1


def test_bigger_jobs_and_inline_off_go_to_a_supervisor(home: Home, httpd: TestHTTPServer) -> None:
    for name in ("a", "b", "c"):
        httpd.put(f"/s/{name}.bin", name.encode() * 100)
    listing = home.path / "list.txt"
    home.path.mkdir(parents=True, exist_ok=True)
    listing.write_text("a.bin\nb.bin\nc.bin\n")
    home.env["DLENGINE_INLINE"] = "2"
    res, pid = _wait_cli(home, "download", f"{httpd.url}/s", "ais://abc", "--from", str(listing), "--wait")
    assert res.returncode == 0, res.stderr
    assert _lock_pid(home) != pid  # 3 objects > 2: a background supervisor
    wait_for(lambda: not _held(home), timeout=30)
    home.env["DLENGINE_INLINE"] = "0"
    res, pid = _wait_cli(home, "download", f"{httpd.url}/s/a.bin", "ais://def", "--wait")
    assert res.returncode == 0 and _lock_pid(home) != pid, res.stderr


def test_a_running_supervisor_gets_the_job(home: Home, httpd: TestHTTPServer) -> None:
    httpd.put("/r/a.bin", b"x" * 100)
    runner = home.spawn("run", "--linger", "60")
    wait_for(lambda: _held(home), timeout=60)
    res, pid = _wait_cli(home, "download", f"{httpd.url}/r/a.bin", "ais://abc", "--wait")
    assert res.returncode == 0, res.stderr
    assert _lock_pid(home) == runner.pid != pid
    assert home.find("ais", "abc", "a.bin") is not None


def test_kill_9_of_the_command_leaves_rows_the_next_run_resumes(home: Home, httpd: TestHTTPServer) -> None:
    home.env["DLENGINE_CHUNK"] = str(CHUNK)
    size = 6 << 20
    httpd.put_generated("/k/big.bin", size, seed=3)
    httpd.set_fault("/k/big.bin", Fault(rate=1 << 20))
    cli = home.spawn("download", f"{httpd.url}/k/big.bin", "ais://abc", "--wait")
    wait_for(lambda: httpd.bytes_sent_for("/k/big.bin") > 2 * CHUNK, timeout=60)
    conn = home.ledger()
    state, owner = conn.execute("SELECT state, owner FROM objects").fetchone()
    assert state == "running" and f":cli{cli.pid}-" in owner  # leased by the command itself
    home.kill(cli)
    time.sleep(0.2)
    assert conn.execute("SELECT state FROM objects").fetchone()[0] == "running"  # nobody took it over
    assert not _held(home)  # the kernel dropped the lock with the command
    httpd.clear_faults()
    res = home.run()
    assert res.returncode == 0, res.stderr
    stored = home.find("ais", "abc", "big.bin")
    assert stored is not None
    expected = httpd.expected_bytes("/k/big.bin")
    assert hashlib.sha256(stored.read_bytes()).digest() == hashlib.sha256(expected).digest()
    assert httpd.bytes_sent_for("/k/big.bin") - size <= CHUNK  # resumed, not fetched again
    job_id = conn.execute("SELECT id FROM jobs").fetchone()[0]
    assert home.status(job_id)["state"] == "finished"
    counters_match_rows(conn, job_id)
    assert home.work_files() == []


def _held(home: Home) -> bool:
    import fcntl

    path = home.path / "supervisor.lock"
    if not path.exists():
        return False
    with open(path, "r+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def test_a_rerun_with_one_changed_file_runs_in_the_command(hhome: Home, hub: FakeHub, cdn: TestHTTPServer) -> None:
    """A job of many rows of which few are left to download (the rest
    skipped at submission) counts only those: one changed file of 20."""
    files = {f"f{i:02}.txt": f"file {i}\n".encode() for i in range(20)}
    hub.add_repo("org/many", files)
    res = hhome.cli("download", "--hf-dataset", "org/many", "ais://many", "--no-start")
    assert res.returncode == 0, res.stderr
    assert hhome.run().returncode == 0
    hub.commit("org/many", {"f07.txt": b"changed\n"})
    res, pid = _wait_cli(hhome, "download", "--hf-dataset", "org/many", "ais://many", "--wait")
    assert res.returncode == 0, res.stderr
    assert _lock_pid(hhome) == pid  # 1 file left of 20 rows: downloaded in the command
    status = hhome.status(res.stdout.split()[-1])
    assert (status["finished_cnt"], status["skipped_cnt"]) == (20, 19)
    assert hhome.find("ais", "many", "f07.txt").read_bytes() == b"changed\n"  # type: ignore[union-attr]


def test_the_connection_limit_holds_in_the_command(home: Home, httpd: TestHTTPServer) -> None:
    gate = threading.Event()
    names = [f"o{i}.bin" for i in range(4)]
    for name in names:
        httpd.put(f"/c/{name}", name.encode() * 100)
        httpd.set_fault(f"/c/{name}", Fault(hold=gate))
    listing = home.path / "list.txt"
    home.path.mkdir(parents=True, exist_ok=True)
    listing.write_text("\n".join(names))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlengine", "download", f"{httpd.url}/c", "ais://lim", "--from", str(listing),
         "--max-conns", "2", "--wait"],
        env=home.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert httpd.wait_in_flight(2, timeout=60)  # two requests held in the server
        time.sleep(0.5)  # room for a third, if the limit let one through
        gate.set()
        _, err = proc.communicate(timeout=60)
    finally:
        gate.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert _lock_pid(home) == proc.pid
    assert httpd.peak_concurrency == 2
    assert sorted(home.ls("ais://lim")) == names


def test_a_small_bucket_is_listed_and_downloaded_in_the_command(home: Home, s3_server: S3Server) -> None:
    """A backend job of a few objects is listed by the command itself (the
    dispatcher's round, under the home's lock), downloaded there, and its
    re-run with nothing changed lists once and fetches nothing; a listing
    bigger than the inline limit is handed to a supervisor with its rows."""
    client, bucket = s3_server.client(), f"in-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    data = {f"p/{i}.bin": bytes([i]) * (1000 + i) for i in range(5)}
    for key, body in data.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    home.env.update(s3_server.env)
    s3_server.reset()
    res, pid = _wait_cli(home, "download", f"s3://{bucket}/p/", "ais://got", "--wait")
    assert res.returncode == 0, res.stderr
    assert _lock_pid(home) == pid and "5/5 objects stored" in res.stderr  # no supervisor
    assert {k: home.find("ais", "got", k).read_bytes() for k in data} == data  # type: ignore[union-attr]
    assert s3_server.count("GET", f"/{bucket}/p/0.bin") == 1
    s3_server.reset()
    res, pid = _wait_cli(home, "download", f"s3://{bucket}/p/", "ais://got", "--wait")
    assert res.returncode == 0 and _lock_pid(home) == pid, res.stderr
    job_id = res.stdout.strip().splitlines()[-1]
    assert home.status(job_id)["skipped_cnt"] == 5
    assert [p for m, p, _ in s3_server.requests if m == "GET" and p.startswith(f"/{bucket}/p/")] == []
    counters_match_rows(home.ledger(), job_id)
    home.env["DLENGINE_INLINE"] = "3"
    res, pid = _wait_cli(home, "download", f"s3://{bucket}/p/", "ais://other", "--wait")
    assert res.returncode == 0 and "5/5 objects stored" in res.stderr, res.stderr
    assert _lock_pid(home) != pid  # listed here, then 5 > 3: a supervisor downloaded them
    job_id = res.stdout.strip().splitlines()[-1]
    counters_match_rows(home.ledger(), job_id)
    assert home.status(job_id)["total"] == 5
    # a listing that fails for good aborts the job in the command: no supervisor is started for it
    wait_for(lambda: not _held(home), timeout=30)  # (once the previous download's supervisor left)
    res, pid = _wait_cli(home, "download", f"s3://gone-{uuid.uuid4().hex[:8]}/p/", "ais://other", "--wait")
    assert res.returncode == 1 and "NoSuchBucket" in res.stderr, res.stderr
    assert _lock_pid(home) == pid and not _held(home)

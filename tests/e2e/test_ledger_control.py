"""The control plane around the ledger cannot be fooled (issue 13):
supervisor threads that keep failing end the supervisor, secrets are
written before their job, "give back" is one transition, retry brings back
every unfinished object, bad ledgers are refused in one line, files are
private."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dlengine import jobsecrets
from dlengine.client import Client
from dlengine.config import load_settings
from dlengine.errors import LedgerError
from dlengine.ledger import claims, db, jobs
from dlengine.ledger.models import NewJob, Outcome
from dlengine.ledger.states import ObjectState
from tests.conftest import Home, counters_match_rows, new_home, tmpfs

# -- a small real disk (tmpfs) for the home itself


@pytest.fixture
def small_home(home: Home, tmp_path: Path) -> Iterator[Home]:
    """The home (ledger and mountpath) on a 1 MiB tmpfs."""
    with tmpfs(tmp_path / "disk", 1 << 20, "mode=0755") as disk:
        home.path = disk / "home"
        home.env["DLENGINE_HOME"] = str(home.path)
        try:
            yield home
        finally:
            home.stop_all()  # nothing may hold the mount


def _fill(path: Path, leave: int) -> None:
    """Use up all but ``leave`` free bytes of the file system holding ``path``."""
    with open(path, "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * (64 << 10))
        except OSError:
            pass
    os.truncate(path, max(0, path.stat().st_size - leave))


def test_ledger_disk_full_while_dispatching_ends_the_supervisor(small_home: Home) -> None:
    # a range job far larger than the disk: the dispatcher's pages fill the ledger
    job = {"type": "range", "bucket": {"name": "b"}, "template": "http://127.0.0.1:9/x/o-{1..500000}.bin"}
    small_home.submit(job)
    res = small_home.run(timeout=120)  # today: the dispatcher dies and run never ends
    assert res.returncode == 3, (res.returncode, res.stderr[-2000:])
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("dlengine: ") and "disk is full" in last, res.stderr[-2000:]


def test_ledger_disk_full_during_submit_shows_the_real_error(small_home: Home) -> None:
    small_home.cli("bucket", "create", "ais://b")  # the ledger exists
    _fill(small_home.path / "filler", leave=256 << 10)  # the job's 20,000 rows need more
    objects = {f"o{i}": f"http://127.0.0.1:9/o{i}" for i in range(20_000)}
    body = json.dumps({"type": "multi", "bucket": {"name": "b"}, "objects": objects})
    res = small_home.cli("submit", "-", "--no-start", input=body)
    assert res.returncode == 3, (res.stdout, res.stderr)
    assert "disk is full" in res.stderr and "rollback" not in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    (small_home.path / "filler").unlink()
    assert json.loads(small_home.cli("show", "--all", "--json").stdout) == []


# -- bad ledgers: one line naming the file, exit 3


def test_corrupt_ledger_is_one_line_naming_the_file(home: Home) -> None:
    home.path.mkdir(parents=True)
    (home.path / "ledger.db").write_bytes(b"this is not SQLite " * 500)
    res = home.cli("show")
    assert res.returncode == 3
    assert res.stderr.strip().splitlines() == [f"dlengine: ledger {home.path / 'ledger.db'}: file is not a database"], (
        res.stderr
    )


def test_ledger_from_a_newer_version_is_refused(home: Home) -> None:
    assert home.cli("bucket", "create", "ais://b").returncode == 0
    conn = sqlite3.connect(home.path / "ledger.db")
    conn.execute(f"PRAGMA user_version = {db.latest_version() + 1}")
    conn.close()
    res = home.cli("show")
    assert res.returncode == 3
    (line,) = res.stderr.strip().splitlines()
    assert str(home.path / "ledger.db") in line and "newer" in line, line
    with pytest.raises(LedgerError, match="newer"):
        db.connect(home.path / "ledger.db")


# -- private files


def test_home_ledger_wal_and_log_are_private(home: Home) -> None:
    assert home.cli("bucket", "create", "ais://b").returncode == 0
    assert stat.S_IMODE(home.path.stat().st_mode) == 0o700
    conn = db.connect(home.path / "ledger.db")
    with db.write(conn):
        jobs.ensure_bucket(conn, "ais", "", "c")  # the WAL exists while a writer is open
    for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm"):
        assert stat.S_IMODE((home.path / name).stat().st_mode) == 0o600, name
    conn.close()
    job = {"type": "single", "bucket": {"name": "b"}, "link": "http://127.0.0.1:9/x"}
    res = home.cli("submit", "-", input=json.dumps(job))  # starts a background supervisor
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE((home.path / "supervisor.log").stat().st_mode) == 0o600


# -- secrets before the job


def test_secrets_are_written_before_the_job_is_committed(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLENGINE_HOME", str(home.path))
    settings = load_settings()
    seen: dict[str, Any] = {}
    create = jobs.create_job

    def checking(conn: sqlite3.Connection, job: NewJob, *args: Any, **kwargs: Any) -> str:
        seen["secrets"] = jobsecrets.load(settings.secrets_dir, job.id)
        return create(conn, job, *args, **kwargs)

    monkeypatch.setattr(jobs, "create_job", checking)
    job = {"type": "single", "bucket": {"name": "b"}, "link": "http://127.0.0.1:9/x",
           "headers": {"Authorization": "Bearer s3cr3t"}}  # fmt: skip
    job_id = Client(settings).submit(job, start=False)
    assert seen["secrets"] == {"Authorization": "Bearer s3cr3t"}
    path = settings.secrets_dir / f"{job_id}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in settings.secrets_dir.iterdir()) == [path.name]  # no temp file left


def test_secrets_of_a_refused_job_are_removed(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLENGINE_HOME", str(home.path))
    settings = load_settings()
    job = {"type": "multi", "bucket": {"name": "b"}, "objects": {"a": "http://h/1", "b": "http://h/2"},
           "headers": {"Authorization": "Bearer s3cr3t"}}  # fmt: skip

    def refusing(*_args: Any, **_kwargs: Any) -> str:
        raise LedgerError("ledger x: database or disk is full")

    monkeypatch.setattr(jobs, "create_job", refusing)
    with pytest.raises(LedgerError):
        Client(settings).submit(job, start=False)
    assert list(settings.secrets_dir.iterdir()) == []


# -- the ledger's transitions


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    return db.connect(tmp_path / "ledger.db")


def _job(conn: sqlite3.Connection, count: int) -> str:
    record = NewJob(jobs.new_job_id(), "multi", "t", "ais", "", "b", "{}")
    return jobs.create_job(conn, record, ((f"o{i}", f"http://h/o{i}") for i in range(count)), lambda _n: "/mp")


def _mp(conn: sqlite3.Connection) -> int:
    with db.write(conn):
        return jobs.mountpath_ids(conn, ["/mp"])["/mp"]


def test_expired_rows_of_an_aborted_job_end_aborted(conn: sqlite3.Connection) -> None:
    job_id = _job(conn, 3)
    tasks = claims.claim(conn, _mp(conn), "dead-owner", 2, lease_seconds=-1)  # already expired
    assert len(tasks) == 2
    jobs.abort_job(conn, job_id)
    assert sorted(claims.recover_expired(conn, alive_owners=["someone-else"])) == sorted(t.id for t in tasks)
    row = jobs.job_row(conn, job_id)
    assert (row["state"], row["pending_cnt"], row["running_cnt"], row["aborted_cnt"]) == ("aborted", 0, 0, 3)
    counters_match_rows(conn, job_id)


@pytest.mark.parametrize("how", ["recover", "recover_expired", "report"])
def test_every_give_back_keeps_an_aborted_job_aborted(conn: sqlite3.Connection, how: str) -> None:
    job_id = _job(conn, 2)
    (task,) = claims.claim(conn, _mp(conn), "w1", 1, lease_seconds=-1)
    jobs.abort_job(conn, job_id)
    if how == "recover":
        claims.recover(conn)
    elif how == "recover_expired":
        claims.recover_expired(conn)
    else:
        claims.report(conn, "w1", [Outcome(task.id, ObjectState.PENDING, release=True)])
    state = conn.execute("SELECT state FROM objects WHERE id = ?", (task.id,)).fetchone()[0]
    assert state == "aborted"
    counters_match_rows(conn, job_id)


def test_retry_brings_back_failed_and_aborted_objects(conn: sqlite3.Connection) -> None:
    job_id = _job(conn, 4)
    (task,) = claims.claim(conn, _mp(conn), "w1", 1, lease_seconds=30)
    full = Outcome(task.id, ObjectState.FAILED, error="no space left", fatal=True)
    claims.report(conn, "w1", [full])  # a fatal error stops the job: 3 aborted
    row = jobs.job_row(conn, job_id)
    assert (row["state"], row["failed_cnt"], row["aborted_cnt"]) == ("aborted", 1, 3)
    assert jobs.retry_job(conn, job_id) == 4
    row = jobs.job_row(conn, job_id)
    assert (row["state"], row["pending_cnt"], row["failed_cnt"], row["aborted_cnt"]) == ("pending", 4, 0, 0)
    counters_match_rows(conn, job_id)


def test_secrets_file_is_replaced_atomically(tmp_path: Path) -> None:
    jobsecrets.save(tmp_path, "dnl-x", {"Authorization": "a"})
    before = os.stat(tmp_path / "dnl-x.json").st_ino
    jobsecrets.save(tmp_path, "dnl-x", {"Authorization": "b"})
    assert os.stat(tmp_path / "dnl-x.json").st_ino != before  # a new file renamed over, never rewritten in place
    assert jobsecrets.load(tmp_path, "dnl-x") == {"Authorization": "b"}


# -- a mountpath belongs to one home


def test_a_second_home_on_the_same_mountpath_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared-mountpath"
    first, second = new_home(tmp_path / "a"), new_home(tmp_path / "b")
    for h in (first, second):
        h.env["DLENGINE_MOUNTPATHS"] = str(shared)
    job = {"type": "single", "bucket": {"name": "b"}, "link": "http://127.0.0.1:9/L0.bin"}
    first.submit(job)
    res = second.cli("submit", "-", "--no-start", input=json.dumps(job))
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert f"mountpath {shared} belongs to another dlengine home ({first.path})" in res.stderr, res.stderr
    assert json.loads(second.cli("show", "--all", "--json").stdout) == []
    res = second.run(timeout=60)
    assert res.returncode == 2 and "belongs to another dlengine home" in res.stderr, res.stderr
    assert first.cli("submit", "-", "--no-start", input=json.dumps(job)).returncode == 0  # still the first's


def test_opening_the_ledger_again_keeps_this_process_locks(tmp_path: Path) -> None:
    # closing any descriptor of the database file drops every POSIX lock of
    # the process on it: a second db.connect must never open() the file
    # itself. Without the shared lock of the live connection, another
    # process closing its own connection takes itself for the last one,
    # checkpoints and deletes the -wal under the live connection, whose
    # later commits then land in an unlinked file nobody else reads.
    path = tmp_path / "ledger.db"
    first = db.connect(path)
    db.connect(path).close()
    read = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); print(c.execute(sys.argv[2]).fetchone()[0]); c.close()"
    )

    def elsewhere(sql: str) -> str:
        res = subprocess.run([sys.executable, "-c", read, str(path), sql], capture_output=True, text=True, check=True)
        return res.stdout.strip()

    elsewhere("SELECT count(*) FROM buckets")  # a connection of another process opens and closes
    with db.write(first):
        jobs.ensure_bucket(first, "ais", "", "after")
    assert elsewhere("SELECT count(*) FROM buckets WHERE name = 'after'") == "1"
    first.close()

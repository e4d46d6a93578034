"""Fault routes of the test server against a real ``dlengine run``.

One run downloads a job whose objects each meet one fault (reset after N
bytes, an ignored Range, a source that changes between attempts, 429/503
with Retry-After, a wrong Content-MD5, 404, 403, a 503 that never ends) and
a second job, with a 1 s timeout, whose object stalls. Each test then checks
one route from the server's own records. ``dlengine retry`` has its own run.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.httpd import Fault, RequestRecord, TestHTTPServer
from tests.conftest import Home, counters_match_rows, new_home, wait_for

SIZE = 600_001
CUT = 200_003  # where resets and stalls happen: not on a chunk boundary
CHUNK = 64 << 10
ATTEMPTS = 3
RETRY_AFTER = 2  # seconds, for the 429
STALL = 8.0  # seconds the stalled answer waits; the job's timeout is 1 s

GOOD = ("reset", "resetmd5", "ignored", "changed", "busy429", "busy503", "stall")
BAD = ("badmd5", "missing", "denied", "down")


@dataclass
class FaultRun:
    home: Home
    httpd: TestHTTPServer
    code: int
    status: dict[str, Any]
    stall_status: dict[str, Any]
    bodies: dict[str, bytes]  # what each good object must end up as
    retry_date: float  # the HTTP-date the 503 asked to wait for (wall clock)
    old_etag: str  # of /f/changed before it changed
    clock: float  # time.time() - time.monotonic(): server stamps -> wall clock

    def gets(self, name: str) -> list[RequestRecord]:
        return [r for r in self.httpd.requests if r.path == f"/f/{name}" and r.method == "GET"]

    def error(self, name: str) -> str:
        errors = {e["name"]: e["error"] for e in self.status["download_errors"]}
        return str(errors[name])


def _faults(httpd: TestHTTPServer) -> None:
    """Put the objects and their faults (but the 503's: see ``_busy_until``)."""
    for name in (*GOOD, "badmd5", "denied", "down"):
        httpd.put(f"/f/{name}", os.urandom(SIZE))
    httpd.set_fault("/f/reset", Fault(reset_after=CUT, times=1))
    httpd.put_generated("/f/resetmd5", SIZE, seed=5, content_md5=True)  # no MD5 in its ETag
    httpd.set_fault("/f/resetmd5", Fault(reset_after=CUT, times=1))
    httpd.set_fault("/f/ignored", Fault(reset_after=CUT, ignore_range=True, times=2))
    httpd.set_fault("/f/changed", Fault(reset_after=CUT, rate=100_000, times=1))  # 2 s to change it
    httpd.set_fault("/f/busy429", Fault(status=429, retry_after=RETRY_AFTER, times=1))
    httpd.set_fault("/f/stall", Fault(stall_after=CUT, stall_seconds=STALL, times=1))
    httpd.set_fault("/f/badmd5", Fault(wrong_md5=True))
    httpd.set_fault("/f/denied", Fault(status=403))
    httpd.set_fault("/f/down", Fault(status=503))


def _busy_until(httpd: TestHTTPServer) -> float:
    """A 503 asking to come back at an HTTP-date a few seconds ahead; set
    once the run has started, so the wait is still ahead when it is asked."""
    retry_date = float(int(time.time()) + 7)
    http_date = email.utils.formatdate(retry_date, usegmt=True)
    httpd.set_fault("/f/busy503", Fault(status=503, retry_after=http_date, times=1))
    return retry_date


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultRun]:
    with TestHTTPServer() as httpd:
        home = new_home(tmp_path_factory.mktemp("faults") / "home")
        home.env.update(DLENGINE_ATTEMPTS=str(ATTEMPTS), DLENGINE_CHUNK=str(CHUNK), DLENGINE_THREADS="12")
        _faults(httpd)
        names = [n for n in GOOD + BAD if n != "stall"]
        objects = {n: f"{httpd.url}/f/{n}" for n in names}
        job = home.submit({"type": "multi", "bucket": {"name": "f"}, "objects": objects})
        stall_job = home.submit(
            {"type": "single", "bucket": {"name": "f"}, "link": f"{httpd.url}/f/stall", "timeout": "1s"}
        )
        clock = time.time() - time.monotonic()
        proc = home.spawn("run")
        retry_date = _busy_until(httpd)  # the workers take longer than this to start
        # the source changes while the first attempt is being reset
        old_etag = httpd.etag("/f/changed")
        wait_for(lambda: httpd.bytes_sent_for("/f/changed") > 0)
        httpd.put("/f/changed", os.urandom(SIZE))
        try:
            code = proc.wait(90)
            bodies = {n: httpd.expected_bytes(f"/f/{n}") for n in GOOD}
            statuses = home.status(job), home.status(stall_job)
            yield FaultRun(home, httpd, code, *statuses, bodies, retry_date, old_etag, clock)
        finally:
            home.stop_all()
        assert not httpd.errors, httpd.errors


def test_run_ends_with_the_failures_only(run: FaultRun) -> None:
    assert run.code == 1  # failed objects
    assert (run.status["state"], run.status["finished_cnt"], run.status["error_cnt"]) == ("finished", len(GOOD) - 1, 4)
    assert {e["name"] for e in run.status["download_errors"]} == set(BAD)
    assert run.stall_status["state"] == "finished" and run.stall_status["finished_cnt"] == 1
    assert run.home.ls("ais://f") == {n: SIZE for n in GOOD}
    for name, body in run.bodies.items():
        stored = run.home.find("ais", "f", name)
        assert stored is not None and stored.read_bytes() == body, name
    assert sorted(p.name for p in run.home.visible_files()) == sorted(GOOD)
    assert run.home.work_files() == []
    conn = run.home.ledger()
    counters_match_rows(conn, run.status["id"])
    counters_match_rows(conn, run.stall_status["id"])


def test_reset_resumes_from_the_bytes_received(run: FaultRun) -> None:
    first, second = run.gets("reset")
    assert (first.status, first.bytes_sent) == (200, CUT)
    assert second.headers.get("Range") == f"bytes={CUT}-"
    assert second.headers.get("If-Range") == run.httpd.etag("/f/reset")
    assert (second.status, second.bytes_sent) == (206, SIZE - CUT)
    assert run.httpd.bytes_sent_for("/f/reset") == SIZE  # not one byte twice


def test_resumed_object_is_verified_with_the_first_answers_md5(run: FaultRun) -> None:
    _, second = run.gets("resetmd5")
    assert second.status == 206  # a 206 carries no Content-MD5: the 200 before it did
    sql = "SELECT checksum FROM catalog WHERE bucket = 'f' AND name = 'resetmd5'"
    digest = hashlib.md5(run.bodies["resetmd5"], usedforsecurity=False).hexdigest()
    assert run.home.ledger().execute(sql).fetchone()[0] == f"md5:{digest}"


def test_busy_with_retry_after_seconds_waits_that_long(run: FaultRun) -> None:
    first, second = run.gets("busy429")
    assert first.status == 429 and second.status == 200
    assert first.end is not None
    assert second.start - first.end >= RETRY_AFTER - 0.05


def test_busy_with_retry_after_date_waits_until_then(run: FaultRun) -> None:
    first, second = run.gets("busy503")
    assert first.status == 503 and second.status == 200
    assert first.start + run.clock < run.retry_date - 1  # the date was worth waiting for
    assert second.start + run.clock >= run.retry_date - 0.05


def test_stall_times_out_then_resumes(run: FaultRun) -> None:
    first, second = run.gets("stall")
    assert second.headers.get("Range") == f"bytes={CUT}-" and second.status == 206
    waited = second.start - first.start
    assert 1.0 <= waited < STALL - 2, waited  # the 1 s timeout, a backoff; never the whole stall


def test_wrong_md5_fails_after_every_attempt_and_stays_invisible(run: FaultRun) -> None:
    assert len(run.gets("badmd5")) == ATTEMPTS
    error = run.error("badmd5")
    assert "checksum mismatch" in error and "md5" in error, error
    assert run.home.find("ais", "f", "badmd5") is None


def test_ignored_range_restarts_from_zero(run: FaultRun) -> None:
    first, second, third = run.gets("ignored")
    assert "Range" not in first.headers and first.status == 200
    assert second.headers.get("Range") == f"bytes={CUT}-" and second.status == 200  # ignored
    assert third.headers.get("Range") == f"bytes={CUT}-" and third.status == 206
    assert run.httpd.bytes_sent_for("/f/ignored") == SIZE + CUT


def test_changed_source_restarts_with_the_new_content(run: FaultRun) -> None:
    first, second = run.gets("changed")
    assert first.status == 200 and first.bytes_sent == CUT
    assert second.headers.get("Range") == f"bytes={CUT}-"
    assert second.headers.get("If-Range") == run.old_etag != run.httpd.etag("/f/changed")
    assert second.status == 200 and second.bytes_sent == SIZE  # If-Range failed: the whole new object


@pytest.mark.parametrize(("name", "code"), [("missing", "404"), ("denied", "403")])
def test_not_found_and_denied_are_not_retried(run: FaultRun, name: str, code: str) -> None:
    assert len(run.gets(name)) == 1
    assert code in run.error(name)


def test_failures_carry_their_error_code(run: FaultRun) -> None:
    codes = {e["name"]: e["code"] for e in run.status["download_errors"]}
    assert codes == {"badmd5": "checksum", "missing": "not-found", "denied": "auth", "down": "busy"}
    assert run.status["errors_by_code"] == {"checksum": 1, "not-found": 1, "auth": 1, "busy": 1}
    shown = run.home.cli("show", run.status["id"], "-v")
    assert shown.returncode == 0, shown.stderr
    kinds = shown.stdout.split("Failed by kind:")[1].split("Errors:")[0].split()
    assert kinds == ["KIND", "OBJECTS", "auth", "1", "busy", "1", "checksum", "1", "not-found", "1"], shown.stdout


def test_attempts_are_configurable(run: FaultRun) -> None:
    assert len(run.gets("down")) == ATTEMPTS
    error = run.error("down")
    assert "503" in error and f"after {ATTEMPTS} attempts" in error, error


def test_retry_requeues_only_the_failed_objects(home: Home, httpd: TestHTTPServer, tmp_path: Path) -> None:
    for name in ("a", "b", "d"):
        httpd.put(f"/r/{name}", name.encode() * 1000)
    httpd.set_fault("/r/d", Fault(status=403))
    objects = {n: f"{httpd.url}/r/{n}" for n in ("a", "b", "c", "d")}
    job_id = home.submit({"type": "multi", "bucket": {"name": "r"}, "objects": objects})
    assert home.run().returncode == 1
    assert home.status(job_id)["error_cnt"] == 2
    httpd.put("/r/c", b"c" * 1000)  # fix the sources
    httpd.set_fault("/r/d", None)
    httpd.reset_stats()
    res = home.cli("retry", job_id, "--no-start")
    assert res.returncode == 0 and res.stdout.startswith("re-queued 2 "), res.stdout  # not a "2" in the job id
    assert home.run().returncode == 0
    fetched = sorted(r.path for r in httpd.requests)
    assert fetched == ["/r/c", "/r/d"]
    status = home.status(job_id)
    assert (status["state"], status["finished_cnt"], status["error_cnt"]) == ("finished", 4, 0)
    conn = home.ledger()
    assert conn.execute("SELECT count(*) FROM catalog WHERE bucket = 'r'").fetchone()[0] == 4
    counters_match_rows(conn, job_id)

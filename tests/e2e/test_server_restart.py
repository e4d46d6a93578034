"""A source's server restarts in the middle of a large download: while it is
down its port refuses connections. The attempts that meet the refusal must
not fail the object and drop what was received: once the server is back,
the download resumes from the bytes it kept (a ranged request), as aria2c
and rclone do, not from zero. A link refused from the start still fails at
once (nothing listens there)."""

from __future__ import annotations

import time

from harness.httpd import Fault, TestHTTPServer
from tests.conftest import new_home, wait_for

SIZE = 6_000_017  # above one chunk: received into a work file with its .meta
RATE = 1_500_000  # bytes/s: the first answer takes ~4 s, cut after ~1.5 MB
ETAG = "v1-restart"
LAST_MODIFIED = 1_700_000_000.0
DOWN = 2.5  # seconds the port refuses connections


def _serve(server: TestHTTPServer, rate: int | None) -> None:
    server.put_generated("/big.bin", SIZE, seed=11, etag=ETAG, last_modified=LAST_MODIFIED)
    if rate is not None:
        server.set_fault("/big.bin", Fault(rate=rate, times=1))


def test_a_restart_mid_download_resumes_from_the_kept_bytes(tmp_path) -> None:
    home = new_home(tmp_path / "home")
    home.env.update(DLENGINE_ATTEMPTS="6")
    first = TestHTTPServer().start()
    port = first.port
    _serve(first, RATE)
    job = home.submit({"type": "single", "bucket": {"name": "r"}, "link": f"{first.url}/big.bin"})
    proc = home.spawn("run")
    try:
        wait_for(lambda: first.bytes_sent_for("/big.bin") > 1_000_000, timeout=60)
        first.stop()  # every connection closed, the port refuses from now on
        kept = wait_for(lambda: sum(p.stat().st_size for p in home.work_files() if p.suffix == ".part"), timeout=20)
        time.sleep(DOWN)  # the next attempts meet a refusal
        second = TestHTTPServer(port).start()
        _serve(second, None)
        assert proc.wait(90) == 0, home.status(job)
        status = home.status(job)
        assert (status["state"], status["finished_cnt"], status["error_cnt"]) == ("finished", 1, 0), status
        stored = home.find("ais", "r", "big.bin")
        assert stored is not None and stored.read_bytes() == second.expected_bytes("/big.bin")
        gets = [r for r in second.requests if r.path == "/big.bin" and r.method == "GET"]
        assert gets, "the object was never asked for again"
        resumed = gets[0].headers.get("Range", "")
        assert resumed.startswith("bytes=") and int(resumed[6:].rstrip("-")) >= kept > 0, resumed
        assert gets[0].status == 206 and second.bytes_sent_for("/big.bin") < SIZE  # not from zero
        second.stop()
    finally:
        home.stop_all()
        first.stop()


def test_a_link_refused_from_the_start_fails_at_once(tmp_path) -> None:
    home = new_home(tmp_path / "home")
    gone = TestHTTPServer()
    url = f"{gone.url}/never.bin"
    gone.server_close()  # bound, never served: the port refuses
    job = home.submit({"type": "single", "bucket": {"name": "r"}, "link": url})
    started = time.monotonic()
    result = home.run(timeout=60)
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - started < 20  # no backoff of five attempts
    errors = home.status(job)["download_errors"]
    assert [e["code"] for e in errors] == ["refused"], errors
    assert "refused" in errors[0]["error"]

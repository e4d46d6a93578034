"""A server that sends bytes past an answer's Content-Length leaves them
on a kept-alive connection, where the next request on that connection
reads them as its status line ("Invalid status line"). That object is
not at fault: it is asked again at once on a new connection, without
costing an attempt (seen as random retries in test_server_checks)."""

from __future__ import annotations

from harness.httpd import Fault, TestHTTPServer
from tests.conftest import Home


def test_leftovers_of_an_answer_do_not_fail_the_next_object(home: Home, httpd: TestHTTPServer) -> None:
    names = ["a"] + [f"b{i:02d}" for i in range(30)]
    for name in names:
        httpd.put(f"/d/{name}", name.encode() * 100)
    httpd.set_fault("/d/a", Fault(extra_bytes=5000))
    # one transfer at a time over one connection, and no second attempt
    home.env.update(DLENGINE_WORKERS="1", DLENGINE_THREADS="1", DLENGINE_ATTEMPTS="1")
    links = {name: f"{httpd.url}/d/{name}" for name in names}
    job_id = home.submit({"type": "multi", "bucket": {"name": "b"}, "objects": links})
    assert home.run().returncode == 0
    status = home.status(job_id)
    assert status["error_cnt"] == 0 and status["finished_cnt"] == len(names), status["download_errors"]
    for name in names[1:]:
        path = home.find("ais", "b", name)
        assert path is not None and path.read_bytes() == name.encode() * 100

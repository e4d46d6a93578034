"""A real browser cannot drive the API from a web page (issue 13).

Headless Chromium loads an attacking page from another local origin (another
port, or another loopback name) that tries what a malicious site would:
``fetch`` with a ``text/plain`` or untyped body (no preflight needed), a JSON
``fetch`` (preflighted), a ``text/plain`` form whose field forms a JSON job,
the same form from a sandboxed frame (``Origin: null``), and a request to a
rebound DNS name that resolves to 127.0.0.1. The page reports to its own
server which attempts it made; the API's access log shows each one refused,
and no job exists afterwards.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Home, wait_for
from tests.e2e.test_api import Api, start_api

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

REBOUND = "rebind.evil.example"
ATTEMPTS = ("text_plain", "untyped", "json_cors", "rebound", "get_list", "form", "null_form")

PAGE = """<!doctype html>
<html><body>
<iframe name="sink"></iframe>
<form id="form" method="POST" action="API/v1/download" enctype="text/plain" target="sink">
<input type="hidden" name='JOB_PREFIX' value='"}'></form>
<iframe id="null" sandbox="allow-forms allow-scripts"></iframe>
<script>
const api = "API/v1/download";
const body = JSON.stringify(JOB);
const done = {};
async function attempt(name, url, init) {
  try { const r = await fetch(url, init); done[name] = "answered " + r.type + " " + r.status; }
  catch (e) { done[name] = "refused " + e; }
}
function loaded(frame) { return new Promise(ok => frame.addEventListener("load", ok, {once: true})); }
(async () => {
  await attempt("text_plain", api, {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body});
  await attempt("untyped", api, {method: "POST", mode: "no-cors", body: new Blob([body])});
  await attempt("json_cors", api, {method: "POST", headers: {"Content-Type": "application/json"}, body});
  await attempt("rebound", "REBOUND_API/v1/download",
                {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body});
  await attempt("get_list", api, {});
  const sink = loaded(document.querySelector("iframe[name=sink]"));
  document.getElementById("form").submit();
  await sink; done.form = "submitted";
  const frame = document.getElementById("null");
  const posted = loaded(frame);  // the form, or its answer: the test waits for the API's log
  frame.srcdoc = document.getElementById("form").outerHTML.replace('target="sink"', "") +
      "<scr" + "ipt>document.forms[0].submit()</scr" + "ipt>";
  await posted; await new Promise(ok => setTimeout(ok, 300)); done.null_form = "submitted";
  await fetch("/report", {method: "POST", body: JSON.stringify(done)});
})();
</script></body></html>
"""


class Attacker(ThreadingHTTPServer):
    """The attacking site: serves the page and collects its report."""

    daemon_threads = True

    def __init__(self, page: str) -> None:
        self.page = page.encode()
        self.report: dict[str, str] | None = None
        super().__init__(("127.0.0.1", 0), _AttackerHandler)


class _AttackerHandler(BaseHTTPRequestHandler):
    server: Attacker

    def do_GET(self) -> None:
        self._answer(200, self.server.page, "text/html")

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/report":
            self.server.report = json.loads(data)
        self._answer(204, b"", "text/plain")

    def _answer(self, status: int, data: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def attacker() -> Iterator[Attacker]:
    server = Attacker("")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _page(api_url: str) -> str:
    job = {"type": "single", "bucket": {"name": "victim"}, "link": "http://127.0.0.1:9/x", "object_name": "x"}
    field = json.dumps(job)[:-1] + ', "pad": "'  # the form sends NAME=VALUE: the value closes the JSON
    rebound = api_url.replace("127.0.0.1", REBOUND)
    page = PAGE.replace("REBOUND_API", rebound).replace("API", api_url)
    return page.replace("JOB_PREFIX", field.replace("'", "&#39;")).replace("JOB", json.dumps(job))


def _answers(api: Api, count: int) -> list[tuple[str, str]] | None:
    """(method, status) of the first ``count`` requests in the API's access log, once there."""
    found = re.findall(r'"([A-Z]+) /v1/download HTTP/1.1" (\d+)', api.log.read_text())
    return found[:count] if len(found) >= count else None


def run_chromium(url: str, profile: Path, attacker: Attacker) -> None:
    """Open ``url`` until the page has reported (or 60 s). Every name but
    the rebound one fails to resolve, so the browser reaches 127.0.0.1 only."""
    assert CHROMIUM is not None
    rules = f"MAP {REBOUND} 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"
    args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-extensions", "--no-default-browser-check", "--no-proxy-server",
            f"--host-resolver-rules={rules}", f"--user-data-dir={profile}", url]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: attacker.report, timeout=60, interval=0.2)
    finally:
        proc.kill()
        proc.wait(30)


@pytest.mark.parametrize("page_host", ["127.0.0.1", "localhost"])
def test_a_web_page_cannot_create_a_job(home: Home, attacker: Attacker, tmp_path: Path, page_host: str) -> None:
    api: Api = start_api(home)
    attacker.page = _page(api.url).encode()
    run_chromium(f"http://{page_host}:{attacker.server_port}/attack.html", tmp_path / "profile", attacker)
    assert attacker.report is not None and set(attacker.report) == set(ATTEMPTS), attacker.report
    # each attempt reached the API and was refused (the preflighted one never got past OPTIONS)
    refused = wait_for(lambda: _answers(api, 7), timeout=30, interval=0.2)
    assert sorted(method for method, _ in refused) == ["GET"] + ["OPTIONS"] + ["POST"] * 5, refused
    assert {status for _, status in refused} == {"403"}, refused
    assert api.ok("GET") == []  # not one job
    assert home.find("ais", "victim", "x") is None
    api.session.close()

"""Every answer of `dlengine serve` decodes with AIStore's wire types.

AIStore's clients (its Go API, CLI, scripts) decode the downloader's
answers into the Go structs of ext/dload/api.go and cmn/err.go with
jsoniter. ``GoType`` below mirrors those structs field for field and
decodes a JSON value the way Go does: keys match case-insensitively,
unknown keys are ignored, ``null`` leaves a value as it was, a number
cannot go into a string nor a string into an int, a ``,string`` int64 must
be a JSON string of digits (jsoniter: "stringModeNumberDecoder: expect
\""), and a time.Time is an RFC 3339 string. Then AIStore's own
assertions on a job (``JobFinished``, ``PendingCnt``) are checked.

Where ``go`` is installed (``.ci/run`` installs Debian's golang-go), the
same answers also go through tests/aisdecode/main.go: the Go structs
themselves, decoded by Go's encoding/json.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from harness.cloud_servers import S3Server
from harness.httpd import Fault, TestHTTPServer
from tests.conftest import ROOT, Home, wait_for
from tests.e2e.test_api import DOWNLOAD, Api, start_api

# ------------------------------------------------- Go's types, mirrored

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")
_INT_TEXT = re.compile(r"-?(0|[1-9][0-9]*)")
_INT64 = (-(2**63), 2**63 - 1)


class GoDecodeError(AssertionError):
    """What Go's decoder would have answered."""


@dataclass(frozen=True)
class GoType:
    """A Go type: ``kind`` is string, int, int64string (``json:",string"``),
    bool, time, slice (of ``elem``) or struct (``fields``)."""

    kind: str
    fields: tuple[tuple[str, GoType], ...] = ()
    elem: GoType | None = None

    def decode(self, value: object, path: str = "$") -> None:
        if value is None and self.kind != "int64string":
            return  # Go leaves the zero value
        getattr(self, "_" + self.kind)(value, path)

    def _string(self, value: object, path: str) -> None:
        _expect(isinstance(value, str), path, f"cannot unmarshal {_kind(value)} into a Go string")

    def _int(self, value: object, path: str) -> None:
        ok = isinstance(value, int) and not isinstance(value, bool) and _INT64[0] <= value <= _INT64[1]
        _expect(ok, path, f"cannot unmarshal {_kind(value)} into a Go int")

    def _int64string(self, value: object, path: str) -> None:
        _expect(isinstance(value, str), path, f'stringModeNumberDecoder: expect ", got {_kind(value)}')
        assert isinstance(value, str)
        _expect(bool(_INT_TEXT.fullmatch(value)), path, f"invalid int64 in a string: {value!r}")
        _expect(_INT64[0] <= int(value) <= _INT64[1], path, f"int64 out of range: {value}")

    def _bool(self, value: object, path: str) -> None:
        _expect(isinstance(value, bool), path, f"cannot unmarshal {_kind(value)} into a Go bool")

    def _time(self, value: object, path: str) -> None:
        ok = isinstance(value, str) and _RFC3339.fullmatch(value) is not None
        _expect(ok, path, f"parsing time {value!r} as RFC 3339")

    def _slice(self, value: object, path: str) -> None:
        _expect(isinstance(value, list), path, f"cannot unmarshal {_kind(value)} into a Go slice")
        assert isinstance(value, list) and self.elem is not None
        for i, item in enumerate(value):
            self.elem.decode(item, f"{path}[{i}]")

    def _struct(self, value: object, path: str) -> None:
        _expect(isinstance(value, dict), path, f"cannot unmarshal {_kind(value)} into a Go struct")
        assert isinstance(value, dict)
        for key, item in value.items():
            field = self._field(key)
            if field is not None:  # unknown keys are ignored
                field.decode(item, f"{path}.{key}")

    def _field(self, key: str) -> GoType | None:
        exact = dict(self.fields).get(key)
        if exact is not None:
            return exact
        folded = [t for name, t in self.fields if name.lower() == key.lower()]
        return folded[0] if folded else None


def _expect(ok: bool, path: str, message: str) -> None:
    if not ok:
        raise GoDecodeError(f"{path}: {message}")


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object" if isinstance(value, dict) else repr(value)


def struct(**fields: GoType) -> GoType:
    return GoType("struct", tuple(fields.items()))


def slice_of(elem: GoType) -> GoType:
    return GoType("slice", elem=elem)


STRING, INT, BOOL, TIME = GoType("string"), GoType("int"), GoType("bool"), GoType("time")
INT64_STRING = GoType("int64string")

# ext/dload/api.go
JOB_FIELDS = {
    "id": STRING,
    "xaction_id": STRING,
    "description": STRING,
    "started_time": TIME,
    "finished_time": TIME,
    "finished_cnt": INT,
    "scheduled_cnt": INT,
    "skipped_cnt": INT,
    "error_cnt": INT,
    "total": INT,
    "all_dispatched": BOOL,
    "aborted": BOOL,
}
JOB = struct(**JOB_FIELDS)
TASK_DL_INFO = struct(name=STRING, downloaded=INT64_STRING, total=INT64_STRING, start_time=TIME, end_time=TIME)
TASK_ERR_INFO = struct(name=STRING, error=STRING)
STATUS_RESP = struct(
    **JOB_FIELDS,
    current_tasks=slice_of(TASK_DL_INFO),
    finished_tasks=slice_of(TASK_DL_INFO),
    download_errors=slice_of(TASK_ERR_INFO),
)
JOB_INFOS = slice_of(JOB)
DL_POST_RESP = struct(id=STRING)
# cmn/err.go
ERR_HTTP = struct(
    tcode=STRING,
    message=STRING,
    method=STRING,
    url_path=STRING,
    remote_addr=STRING,
    caller=STRING,
    node=STRING,
    status=INT,
)

# -------------------------------------------- AIStore's checks of a job


def check_job(job: dict[str, Any]) -> None:
    """ext/dload/api.go: Job.JobFinished's assertion and PendingCnt >= 0."""
    finished = job.get("finished_time") is not None
    done = job["finished_cnt"] + job["error_cnt"]
    if finished and not job["aborted"]:
        assert job["all_dispatched"] and job["scheduled_cnt"] == done, job
    total = job["total"] if job["total"] > 0 else job["scheduled_cnt"]
    assert total - done >= 0, job


def check_status(status: dict[str, Any]) -> None:
    STATUS_RESP.decode(status)
    check_job(status)
    if status.get("finished_time") is not None:
        assert status["current_tasks"] == [], status  # AIStore's abortDownload asserts it


GO_KINDS = {STATUS_RESP: "status", JOB_INFOS: "list", DL_POST_RESP: "post", ERR_HTTP: "error"}
Seen = list[tuple[str, object]]


def answer(
    api: Api, method: str, path: str, body: object, go_type: GoType, status: int = 200, seen: Seen | None = None
) -> Any:
    """One request; its answer decodes as ``go_type`` (``ErrHTTP`` for an
    error); ``seen`` collects it for the Go decoder."""
    res = api.call(method, path, body)
    assert res.status_code == status, (method, path, body, res.status_code, res.text)
    payload = res.json()
    go_type = ERR_HTTP if status >= 400 else go_type
    go_type.decode(payload)
    if status >= 400:
        assert payload["message"] and payload["status"] == status, payload
    if seen is not None and go_type in GO_KINDS:
        seen.append((GO_KINDS[go_type], payload))
    return payload


@pytest.fixture(scope="session")
def go_decode(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """tests/aisdecode built with ``go`` (None without it): decodes a list
    of (kind, answer) with AIStore's Go structs, one result line each."""
    if shutil.which("go") is None:
        return None
    work = tmp_path_factory.mktemp("go")
    env = {**os.environ, "GOCACHE": str(work / "cache"), "GOPATH": str(work / "path"), "GOPROXY": "off"}
    binary = work / "aisdecode"
    source = ROOT / "tests" / "aisdecode" / "main.go"
    subprocess.run(["go", "build", "-o", str(binary), str(source)], env=env, check=True, timeout=300, cwd=work)

    def decode(answers: Seen) -> list[str]:
        lines = "".join(json.dumps({"kind": kind, "body": body}) + "\n" for kind, body in answers)
        out = subprocess.run([str(binary)], input=lines, capture_output=True, text=True, check=True, timeout=60)
        return out.stdout.splitlines()

    return decode


# ---------------------------------------------------------------- tests


def test_go_decoder_can_fail() -> None:
    """The mirror refuses what AIStore's decoder refuses (the old answers)."""
    old_task = {"name": "x", "downloaded": 10, "total": 20}
    with pytest.raises(GoDecodeError, match="stringModeNumberDecoder"):
        TASK_DL_INFO.decode(old_task)
    for bad in ({"total": "3"}, {"aborted": 1}, {"started_time": "yesterday"}, {"id": 5}, {"total": 1.5}):
        with pytest.raises(GoDecodeError):
            JOB.decode(bad)
    with pytest.raises(GoDecodeError):
        TASK_DL_INFO.decode({"Downloaded": None})  # keys fold case; null is no string
    JOB.decode({"ID": "x", "unknown": [1, {}], "total": None, "finished_time": "2026-01-02T03:04:05.678Z"})


def test_go_structs_refuse_the_old_answers(go_decode: Any) -> None:
    """AIStore's own structs (tests/aisdecode) refuse what the mirror refuses."""
    if go_decode is None:
        pytest.skip("go is not installed (.ci/run installs golang-go)")
    old = {"id": "x", "current_tasks": [{"name": "a", "downloaded": 10, "total": 20}]}
    new = {"id": "x", "current_tasks": [{"name": "a", "downloaded": "10", "total": "20", "start_time": None}]}
    results = go_decode([("status", old), ("status", new), ("error", {"error": "x", "status": "400"}), ("list", [{}])])
    assert "invalid use of ,string" in results[0] and results[1] == "ok", results
    assert "cannot unmarshal string" in results[2] and results[3] == "ok", results


@pytest.fixture
def served(home: Home, s3_server: S3Server) -> Iterator[Api]:
    home.env.update(s3_server.env)
    server = start_api(home)
    yield server
    server.session.close()


def _running_status(api: Api, job_id: str) -> dict[str, Any]:
    def running() -> dict[str, Any] | None:
        status: dict[str, Any] = api.status(job_id)
        tasks = status["current_tasks"]
        return status if tasks and int(tasks[0]["downloaded"]) > 0 else None

    found: dict[str, Any] = wait_for(running, timeout=30, interval=0.1)
    return found


def test_every_answer_decodes_with_aistores_types(
    served: Api, home: Home, httpd: TestHTTPServer, s3_server: S3Server, go_decode: Any
) -> None:
    api = served
    seen: Seen = []

    def ask(method: str, path: str, body: object, go_type: GoType, status: int = 200) -> Any:
        return answer(api, method, path, body, go_type, status, seen)

    for i in range(3):
        httpd.put(f"/w/f{i}.bin", bytes([i]) * (1000 + i))
    httpd.put("/w/gone.bin", b"x")
    httpd.set_fault("/w/gone.bin", Fault(status=404))
    httpd.put_generated("/w/slow.iso", 30_000_000)
    httpd.set_fault("/w/slow.iso", Fault(rate=300_000))
    client = s3_server.client()
    client.create_bucket(Bucket="wire-src")
    client.put_object(Bucket="wire-src", Key="p/a.bin", Body=b"a" * 300)
    bucket = {"name": "wire"}

    # start: every job type
    posts = {
        "single": {"type": "single", "bucket": bucket, "link": f"{httpd.url}/w/f0.bin", "object_name": "one"},
        "multi": {"type": "multi", "bucket": bucket, "objects": [f"{httpd.url}/w/f1.bin", f"{httpd.url}/w/gone.bin"]},
        "range": {"type": "range", "bucket": bucket, "template": f"{httpd.url}/w/f{{0..2}}.bin", "subdir": "r"},
        "backend": {"type": "backend", "bucket": bucket, "backend_bck": {"name": "wire-src", "provider": "aws"}},
    }
    ids = {kind: ask("POST", DOWNLOAD, body, DL_POST_RESP)["id"] for kind, body in posts.items()}
    slow = answer(
        api, "POST", DOWNLOAD, {"type": "single", "bucket": bucket, "link": f"{httpd.url}/w/slow.iso"}, DL_POST_RESP
    )["id"]

    # status while running: byte counts as strings, AIStore's checks hold
    running = _running_status(api, slow)
    check_status(running)
    seen.append(("status", running))
    assert running["finished_time"] is None and running["xaction_id"]
    task = running["current_tasks"][0]
    assert task["total"] == "30000000" and isinstance(task["downloaded"], str)
    assert ask("GET", DOWNLOAD, {"id": slow, "only_active_tasks": True}, STATUS_RESP)["id"] == slow

    # status finished (with an error among them)
    for kind, job_id in ids.items():
        final = api.wait(job_id)
        check_status(ask("GET", DOWNLOAD, {"id": job_id}, STATUS_RESP))
        assert final["finished_time"] is not None, kind
    multi = api.status(ids["multi"])
    assert [e["name"] for e in multi["download_errors"]] == ["gone.bin"] and multi["error_cnt"] == 1
    assert all(isinstance(t["downloaded"], str) for t in multi["finished_tasks"])

    # list: all, by regex, only active
    for body in (None, {}, {"regex": "multi-download"}, {"only_active_tasks": True}, {"id": "", "regex": ""}):
        listed = ask("GET", DOWNLOAD, body, JOB_INFOS)
        for job in listed:
            check_job(job)
    assert [j["id"] for j in ask("GET", DOWNLOAD, {"regex": "^multi-download"}, JOB_INFOS)] == [ids["multi"]]

    # abort (running, then finished), aborted status, remove
    ask("DELETE", DOWNLOAD + "/abort", {"id": slow}, GoType("struct"))
    aborted = api.wait(slow)
    check_status(ask("GET", DOWNLOAD, {"id": slow}, STATUS_RESP))
    assert aborted["aborted"] is True and aborted["finished_time"] is not None
    ask("DELETE", DOWNLOAD + "/abort", {"id": ids["single"]}, GoType("struct"))
    check_status(ask("GET", DOWNLOAD, {"id": ids["single"]}, STATUS_RESP))
    for job_id in (slow, ids["single"]):
        ask("DELETE", DOWNLOAD + "/remove", {"id": job_id}, GoType("struct"))

    # errors: AIStore's ErrHTTP, message and status
    errors = [
        ("GET", DOWNLOAD, {"id": slow}, 404),
        ("DELETE", DOWNLOAD + "/abort", {"id": "dnl-none"}, 404),
        ("DELETE", DOWNLOAD + "/remove", {"id": slow}, 404),
        ("DELETE", DOWNLOAD + "/remove", {}, 400),
        ("GET", DOWNLOAD, {"id": "x", "regex": "y"}, 400),
        ("POST", DOWNLOAD, {"type": "single", "bucket": bucket}, 400),
        ("POST", DOWNLOAD, {"type": "single", "bucket": bucket, "link": "http://h/x", "object_name": "..%2Fo"}, 400),
        ("PUT", DOWNLOAD, None, 405),
        ("GET", "/v1/nothing", None, 404),
    ]
    for method, path, body, code in errors:
        payload = ask(method, path, body, ERR_HTTP, status=code)
        assert payload["error"] == payload["message"]

    # the same answers through AIStore's Go structs themselves
    if go_decode is not None:
        assert len(seen) > 20
        results = go_decode(seen)
        assert results == ["ok"] * len(seen), [(r, a) for a, r in zip(seen, results, strict=True) if r != "ok"]

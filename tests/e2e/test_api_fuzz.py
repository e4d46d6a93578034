"""Fuzzing the HTTP API with malformed requests (hypothesis): every answer
is a JSON error of the 4xx family as the OpenAPI document describes it,
never a 5xx, and the ledger stays consistent with nothing half-created."""

from __future__ import annotations

import copy
import json
import string
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import Home
from tests.e2e.test_api import DOWNLOAD, Api, check_schema, ledger_consistent, start_api

# A closed port on loopback: even a job accepted by mistake fetches nothing
# from anywhere else.
LINK = "http://127.0.0.1:1"
TYPES = ("single", "multi", "range", "backend")
COMMON = ("type", "bucket", "description", "timeout", "limits", "headers", "progress_interval", "etl_name", "etl_args")
VALID: dict[str, dict[str, Any]] = {
    "single": {"type": "single", "bucket": {"name": "fz"}, "link": LINK + "/a.bin", "object_name": "a.bin"},
    "multi": {"type": "multi", "bucket": {"name": "fz"}, "objects": {"x/a": LINK + "/a", "b": LINK + "/b"}},
    "multi_list": {"type": "multi", "bucket": {"name": "fz"}, "objects": [LINK + "/a", LINK + "/b"]},
    "range": {"type": "range", "bucket": {"name": "fz"}, "template": LINK + "/o{01..10}.bin", "subdir": "s/"},
}
OWN_FIELDS = {
    "single": ("link", "object_name", "from_remote"),
    "multi": ("objects",),
    "multi_list": ("objects",),
    "range": ("template", "subdir"),
}
REQUIRED = {"single": "link", "multi": "objects", "multi_list": "objects", "range": "template"}
FUZZ = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

numbers = st.integers() | st.floats(allow_nan=False, allow_infinity=False)
scalars = st.none() | st.booleans() | numbers | st.text(max_size=12)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
not_string = json_values.filter(lambda v: v is not None and not isinstance(v, str))
not_object = json_values.filter(lambda v: v is not None and not isinstance(v, dict))

# field -> values that make any job invalid
BAD_COMMON = {
    "type": st.text(max_size=10).filter(lambda s: s.strip().lower() not in TYPES) | not_string,
    "bucket": not_object
    | st.sampled_from([{}, {"name": ""}, {"name": "a/b"}, {"name": ".."}, {"name": 3}])
    | st.sampled_from([{"name": "x", "provider": "hf"}, {"name": "x", "c": 1}]),
    "description": not_string,
    "timeout": st.sampled_from(["abc", "5 parsecs", "-1s", "1x", True, -1, [], {}]),
    "limits": not_object
    | st.sampled_from([{"connections": -1}, {"connections": "8"}, {"connections": True}, {"connections": 1.5}])
    | st.sampled_from([{"bytes_per_hour": -5}, {"bytes_per_hour": "lots"}, {"speed": 1}]),
    "headers": st.sampled_from([{"bad name": "v"}, {"X-A": 5}, {"X-A": "a\r\nb"}, {"": "v"}, {"X-A": ["a", 1]}])
    | st.sampled_from([["X: v"], "X: v"]),
    "etl_name": st.text(min_size=1, max_size=5),
}
BAD_OWN = {
    "link": st.none()
    | st.just("")
    | not_string
    # (a link ending in "/" is fine here: the valid single job names its object)
    | st.sampled_from(["file:///etc/passwd", "ftp://127.0.0.1/x", "http://169.254.169.254/latest"]),
    "object_name": not_string | st.sampled_from(["../x", "/abs", "a/", "a\x00b", ".", "x/./y"]),
    "from_remote": st.just(True) | st.integers() | st.text(max_size=3),
    "objects": st.sampled_from([None, [], {}, "a", 5, {"../e": LINK + "/a"}, {"a": 5}, {"a/": LINK + "/a"}])
    | st.sampled_from([[LINK + "/a", LINK + "/a"], [LINK + "/a", 7], [LINK + "/"], {"": LINK + "/a"}]),
    "template": st.none()
    | st.just("")
    | not_string
    | st.sampled_from([f"{LINK}/o{{1..}}.bin", f"{LINK}/o{{a..z}}.bin", f"{LINK}/{{1..3}}/same.bin"])
    | st.sampled_from([f"{LINK}/o{{3..1}}.bin", f"{LINK}/"])
    | st.sampled_from([f"{LINK}/o{{1..20000000}}.bin", f"{LINK}/o{{1..3..0}}.bin", f"{LINK}/o{{1..12}}{{1..12}}.bin"]),
    "subdir": not_string | st.sampled_from(["../up/", "/abs/", "a\x00/"]),
}


@st.composite
def malformed_jobs(draw: st.DrawFn) -> bytes:
    """A valid job request broken in exactly one way (or many)."""
    kind = draw(st.sampled_from(sorted(VALID)))
    job = copy.deepcopy(VALID[kind])
    how = draw(st.sampled_from(["drop", "common", "own", "unknown", "truncate", "top", "dup", "nan", "deep", "utf8"]))
    if how == "drop":
        del job[draw(st.sampled_from(["type", "bucket", REQUIRED[kind]]))]
    elif how == "common":
        field = draw(st.sampled_from(sorted(BAD_COMMON)))
        job[field] = draw(BAD_COMMON[field])
    elif how == "own":
        field = draw(st.sampled_from(OWN_FIELDS[kind]))
        job[field] = draw(BAD_OWN[field])
    elif how == "unknown":
        known = COMMON + OWN_FIELDS[kind]
        job[draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in known))] = draw(json_values)
    return _encode(draw, job, how)


def _encode(draw: st.DrawFn, job: dict[str, Any], how: str) -> bytes:
    text = json.dumps(job)
    if how == "truncate":  # every proper prefix of an object is malformed
        return text[: draw(st.integers(1, len(text) - 1))].encode()
    if how == "top":
        return json.dumps(draw(not_object)).encode()
    if how == "dup":
        return ('{"type": "multi", ' + text[1:]).encode()
    if how == "nan":
        constant = draw(st.sampled_from(["NaN", "Infinity", "-Infinity"]))
        return (text[:-1] + f', "timeout": {constant}}}').encode()
    if how == "deep":
        depth = draw(st.sampled_from([10, 1000, 100_000]))
        return ('{"type": "single", "bucket": ' + "[" * depth + "]" * depth + "}").encode()
    if how == "utf8":
        return text.encode().replace(b"fz", b"f\xff", 1)
    return text.encode()


def admin_bodies() -> st.SearchStrategy[bytes]:
    optional = {"id": json_values, "regex": json_values, "only_active_tasks": json_values}
    fields = st.fixed_dictionaries({}, optional=optional)
    odd_keys = st.dictionaries(st.sampled_from(["id", "regex", "only_active_tasks", "ID", "uuid", ""]), json_values)
    encoded = (json_values | fields | odd_keys).map(lambda v: json.dumps(v).encode())
    return encoded | st.binary(max_size=40)


queries = st.sampled_from(
    ["", "id=", "id=x", "only_active_tasks=maybe", "regex=(", "foo=1", "id=a&id=b", "%zz", "a" * 9]
)
queries = queries | st.text(alphabet=string.printable, max_size=20).map(lambda s: quote(s, safe="=&"))


@pytest.fixture
def fuzz_api(home: Home) -> Iterator[Api]:
    home.env["DLENGINE_ATTEMPTS"] = "1"
    server = start_api(home, "--quiet")
    assert server.ok("GET") == []  # the ledger exists before the checks below
    yield server
    server.session.close()


def _check_error(method: str, path: str, status: int, payload: Any) -> None:
    event(f"{status}: {payload.get('field', '') if isinstance(payload, dict) else ''}")
    assert 400 <= status < 500, (method, path, status, payload)
    assert isinstance(payload, dict) and isinstance(payload.get("error"), str) and payload["status"] == status
    check_schema(method, path, status, payload)


def test_malformed_jobs_are_refused_whole(fuzz_api: Api, home: Home) -> None:
    @FUZZ
    @given(body=malformed_jobs())
    def post(body: bytes) -> None:
        res = fuzz_api.call("POST", data=body, headers={"Content-Type": "application/json"})
        _check_error("POST", DOWNLOAD, res.status_code, res.json())

    post()
    assert ledger_consistent(home) == []  # not one job, not one object


@pytest.mark.parametrize(
    ("method", "path"), [("GET", DOWNLOAD), ("DELETE", DOWNLOAD + "/abort"), ("DELETE", DOWNLOAD + "/remove")]
)
def test_admin_bodies(fuzz_api: Api, home: Home, method: str, path: str) -> None:
    job = fuzz_api.ok("POST", body=VALID["range"])["id"]

    @FUZZ
    @given(body=admin_bodies(), query=queries)
    def admin(body: bytes, query: str) -> None:
        res = fuzz_api.call(method, f"{path}?{query}" if query else path, data=body)
        payload = res.json()
        if res.status_code != 200:
            _check_error(method, path, res.status_code, payload)
            return
        assert method == "GET", payload  # DELETE of a random id never succeeds
        event("200")
        check_schema(method, path, 200, payload)

    admin()
    assert ledger_consistent(home) == [job]


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "DELETE", "PUT", "HEAD", "OPTIONS"])
    | st.text(string.ascii_uppercase, min_size=1, max_size=10),
    path=st.sampled_from([DOWNLOAD, DOWNLOAD + "/", DOWNLOAD + "/abort", "/v1", "/"]) | st.text(max_size=12),
    body=st.binary(max_size=64),
)
def test_any_method_path_and_bytes(fuzz_api: Api, method: str, path: str, body: bytes) -> None:
    url_path = "/" + quote(path.lstrip("/"), safe="/")
    res = fuzz_api.call(method, url_path, data=body)
    assert res.status_code < 500, (method, url_path, body, res.text)
    event(str(res.status_code))
    if method != "HEAD":
        payload = res.json()
        if res.status_code >= 400:
            assert payload["status"] == res.status_code and isinstance(payload["error"], str)

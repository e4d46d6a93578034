"""Every bad input exits 2, names the problem, and creates nothing."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Home

GOOD = "http://127.0.0.1:9/x/obj-{1..3}.bin"

BAD_JOBS = [
    ("malformed", "{not json", "json"),
    ("unknown type", json.dumps({"type": "mega", "bucket": {"name": "b"}}), "type"),
    ("missing bucket.name", json.dumps({"type": "single", "bucket": {}, "link": "http://h/x"}), "bucket.name"),
    ("missing link", json.dumps({"type": "single", "bucket": {"name": "b"}}), "link"),
    ("missing objects", json.dumps({"type": "multi", "bucket": {"name": "b"}}), "objects"),
    ("missing template", json.dumps({"type": "range", "bucket": {"name": "b"}}), "template"),
    (
        "negative connections",
        json.dumps({"type": "range", "bucket": {"name": "b"}, "template": GOOD, "limits": {"connections": -1}}),
        "limits.connections",
    ),
    (
        "negative bph",
        json.dumps({"type": "range", "bucket": {"name": "b"}, "template": GOOD, "limits": {"bytes_per_hour": -5}}),
        "limits.bytes_per_hour",
    ),
    (
        "start > end",
        json.dumps({"type": "range", "bucket": {"name": "b"}, "template": "http://h/x{9..1}.bin"}),
        "template",
    ),
    (
        "zero step",
        json.dumps({"type": "range", "bucket": {"name": "b"}, "template": "http://h/x{1..9..0}.bin"}),
        "template",
    ),
    ("no braces", json.dumps({"type": "range", "bucket": {"name": "b"}, "template": "http://h/x.bin"}), "template"),
    (
        "too many",
        json.dumps({"type": "range", "bucket": {"name": "b"}, "template": "http://h/x{1..10000001}.bin"}),
        "template",
    ),
    (
        "dotdot name",
        json.dumps({"type": "single", "bucket": {"name": "b"}, "link": "http://h/x", "object_name": "../etc/passwd"}),
        "object_name",
    ),
    (
        "absolute name",
        json.dumps({"type": "multi", "bucket": {"name": "b"}, "objects": {"/etc/passwd": "http://h/x"}}),
        "objects",
    ),
    (
        "duplicates",
        json.dumps({"type": "multi", "bucket": {"name": "b"}, "objects": ["http://h/a/x.bin", "http://h/b/x.bin"]}),
        "duplicate",
    ),
]


def _assert_nothing_created(home: Home) -> None:
    res = home.cli("show", "--all", "--json")
    assert res.returncode == 0
    assert json.loads(res.stdout) == []
    assert home.visible_files() == []


@pytest.mark.parametrize(("label", "body", "named"), BAD_JOBS, ids=[b[0] for b in BAD_JOBS])
def test_bad_job_is_refused(home: Home, label: str, body: str, named: str) -> None:
    res = home.cli("submit", "-", "--no-start", input=body)
    assert res.returncode == 2, (label, res.stdout, res.stderr)
    assert named in res.stderr, res.stderr
    assert res.stdout == ""
    _assert_nothing_created(home)


def test_bad_job_file_does_not_touch_other_jobs(home: Home) -> None:
    good = home.submit({"type": "single", "bucket": {"name": "b"}, "link": "http://127.0.0.1:9/x.bin"})
    res = home.cli("submit", "-", "--no-start", input=BAD_JOBS[-1][1])
    assert res.returncode == 2
    jobs = json.loads(home.cli("show", "--all", "--json").stdout)
    assert [j["id"] for j in jobs] == [good]
    assert jobs[0]["state"] == "pending"


@pytest.mark.parametrize("command", ["show", "abort", "rm", "retry"])
def test_unknown_id(home: Home, command: str) -> None:
    res = home.cli(command, "dnl-nosuchjob")
    assert res.returncode == 2
    assert "not found" in res.stderr and "dnl-nosuchjob" in res.stderr


def test_missing_job_file(home: Home) -> None:
    res = home.cli("submit", "/nonexistent/job.json")
    assert res.returncode == 2 and "cannot read" in res.stderr


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["download", "http://h/x.bin", "weird://b"], "provider"),
        (["download", "http://h/x.bin", "ais://b", "--limit-bph", "lots"], "--limit-bph"),
        (["download", "http://h/x.bin", "ais://b", "--max-conns", "-2"], "--max-conns: must be from 0 (no limit)"),
        (["download", "http://h/x.bin", "ais://b", "--max-conns=-1"], "--max-conns: must be from 0 (no limit)"),
        (["download", "http://h/x.bin", "ais://b", "--limit-bph=-1"], "--limit-bph: must not be negative"),
        (["download", "http://h/x.bin", "ais://b", "--limit-bph=-1MiB"], "--limit-bph: must not be negative"),
        (["download", "http://h/x.bin", "ais://b", "--blob-threshold=-1"], "--blob-threshold: must not be negative"),
        (["download", "http://h/x.bin", "ais://b", "--timeout", "soon"], "timeout"),
        (["download", "file:///etc/passwd", "ais://b"], "scheme"),
        (["download", "http://169.254.169.254/latest/meta-data", "ais://b"], "link-local"),
        (["download", "http://h/x.bin", "ais://b", "--header", "no-colon"], "--header"),
    ],
)
def test_bad_download_arguments(home: Home, args: list[str], named: str) -> None:
    res = home.cli(*args, "--no-start")
    assert res.returncode == 2, res.stderr
    assert named in res.stderr
    _assert_nothing_created(home)


def test_download_without_arguments_names_what_is_missing(home: Home) -> None:
    res = home.cli("download")
    assert res.returncode == 2
    assert res.stderr.splitlines()[-1] == "dlengine download: error: the following arguments are required: dst"


@pytest.mark.parametrize(
    ("args", "usage", "error"),
    [
        (["download", "http://h/x", "ais://b", "--wiat"], "dlengine download", "--wiat (did you mean --wait?)"),
        (["bucket", "ls", "--jsn"], "dlengine bucket ls", "--jsn (did you mean --json?)"),
        (["show", "dnl-x", "extra"], "dlengine show", "extra"),
    ],
)
def test_unknown_option_is_refused_by_its_command(home: Home, args: list[str], usage: str, error: str) -> None:
    res = home.cli(*args)
    assert res.returncode == 2
    first, *_, last = res.stderr.splitlines()
    assert first.startswith(f"usage: {usage} ")  # was the top-level usage: 'dlengine [-h] [--version] COMMAND ...'
    assert last == f"{usage}: error: unrecognized arguments: {error}"
    _assert_nothing_created(home)


@pytest.mark.parametrize(("template", "position"), [("x-{{1..10}", 20), ("x-{1..10}}", 27)])
def test_range_template_with_a_stray_brace_creates_nothing(home: Home, template: str, position: int) -> None:
    link = f"http://127.0.0.1/{template}"
    res = home.cli("download", link, "ais://b", "--no-start")
    assert res.returncode == 2, res.stderr
    assert f"template: {link!r}: stray {link[position - 1]!r} at position {position}" in res.stderr, res.stderr
    _assert_nothing_created(home)


def test_range_template_with_duplicate_names_creates_nothing(home: Home) -> None:
    # two ranges that collide: 1+11 and 11+1 both give "x111"
    res = home.cli("download", "http://h/x{1..12}{1..12}", "ais://b", "--no-start")
    assert res.returncode == 2
    assert "duplicate" in res.stderr
    _assert_nothing_created(home)

"""Job request parsing and validation: dlengine.spec."""

from __future__ import annotations

import dataclasses
import itertools
import json
import tracemalloc
from typing import Any

import pytest

from dlengine.errors import SpecError
from dlengine.spec import (
    MAX_TEMPLATE_OBJECTS,
    BucketRef,
    JobSpec,
    JobType,
    Limits,
    ObjectRef,
    Template,
    derive_name,
    iter_objects,
    load_job,
    normalize_link,
    object_count,
    parse_duration,
    parse_job,
    parse_size,
    parse_template,
    spec_to_dict,
    validate_object_name,
)
from dlengine.spec.durations import duration_field, format_duration
from dlengine.spec.names import is_secret_header, join_subdir, validate_bucket_name

BUCKET = {"name": "abc"}


def job(**fields: Any) -> dict[str, Any]:
    """A request body; ``bucket`` defaults to a local bucket ``abc``."""
    return {"bucket": BUCKET, **fields}


def spec_error(data: object) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_job(data)
    return info.value


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("", 0.0),
        ("0s", 0.0),
        ("0", 0.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1.5s", 1.5),
        ("1m0.5s", 60.5),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("100ns", 1e-7),
        (" 2m ", 120.0),
        ("45", 45.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, rel=1e-12, abs=0)


@pytest.mark.parametrize("text", ["-5s", "5x", "s", "1h 30m", "1.2.3s", "abc", "5S", "1d"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_duration(text, "timeout")
    assert info.value.field == "timeout"
    assert repr(text) in info.value.reason


@pytest.mark.parametrize(("value", "seconds"), [(None, 0.0), (0, 0.0), (30, 30.0), (1.5, 1.5), ("1m", 60.0)])
def test_duration_field_accepts(value: object, seconds: float) -> None:
    assert duration_field(value, "timeout") == seconds


@pytest.mark.parametrize("value", [True, False, -1, -0.5, float("nan"), float("inf"), [], {}])
def test_duration_field_refuses(value: object) -> None:
    with pytest.raises(SpecError) as info:
        duration_field(value, "timeout")
    assert info.value.field == "timeout"


@pytest.mark.parametrize("seconds", [0.0, 30.0, 90.0, 5400.0, 3661.0, 1.5, 0.1, 0.00125, 123.456])
def test_format_duration_round_trips(seconds: float) -> None:
    formatted = format_duration(seconds)
    assert duration_field(formatted, "timeout") == seconds


def test_format_duration_is_go_style() -> None:
    assert format_duration(5400.0) == "1h30m"
    assert format_duration(0.0) == "0s"
    assert format_duration(61.0) == "1m1s"


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("1024", 1024),
        ("10KiB", 10 * 1024),
        ("10kib", 10 * 1024),
        ("10Ki", 10 * 1024),
        ("10KB", 10_000),
        ("10k", 10_000),
        ("500MB", 500_000_000),
        ("1GiB", 1 << 30),
        ("1.5GB", 1_500_000_000),
        ("1.5GiB", 3 << 29),
        ("2TB", 2 * 10**12),
        ("1TiB", 1 << 40),
        ("7B", 7),
        ("3 MiB", 3 << 20),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text, "limit") == size


@pytest.mark.parametrize("text", ["", "-1", "GB", "1XB", "1iB", "1.2.3MB", "ten"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_size(text, "limits.bytes_per_hour")
    assert info.value.field == "limits.bytes_per_hour"


# ---------------------------------------------------------------- templates


@pytest.mark.parametrize(
    ("text", "first", "count"),
    [
        ("s-{001..100}", ["s-001", "s-002", "s-003"], 100),
        ("s-{1..100}", ["s-1", "s-2", "s-3"], 100),
        ("s-{0001..0010}", ["s-0001", "s-0002", "s-0003"], 10),
        ("s-{0..10}", ["s-0", "s-1", "s-2"], 11),  # "0" alone is no leading zero
        ("s-{00..10}", ["s-00", "s-01", "s-02"], 11),
        ("s-{001..1000}", ["s-001", "s-002", "s-003"], 1000),  # min(3, 4)
        ("s-{0..100..50}", ["s-0", "s-50", "s-100"], 3),
    ],
)
def test_template_padding_and_count(text: str, first: list[str], count: int) -> None:
    template = parse_template(text)
    assert list(itertools.islice(template, 3)) == first
    assert template.count == count == len(list(template))


def test_template_padding_keeps_wider_numbers() -> None:
    assert list(parse_template("{098..101}")) == ["098", "099", "100", "101"]
    assert parse_template("{001..1000}").last() == "1000"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x{1..10..4}", ["x1", "x5", "x9"]),  # 10 is not reachable: not produced
        ("x{1..9..4}", ["x1", "x5", "x9"]),
        ("x{5..5}", ["x5"]),
        ("x{2..3..100}", ["x2"]),
    ],
)
def test_template_steps(text: str, expected: list[str]) -> None:
    template = parse_template(text)
    assert list(template) == expected
    assert template.count == len(expected)


def test_template_odometer_last_range_fastest() -> None:
    template = parse_template("d{1..2}/f{01..03}.tar")
    assert list(template) == [
        "d1/f01.tar",
        "d1/f02.tar",
        "d1/f03.tar",
        "d2/f01.tar",
        "d2/f02.tar",
        "d2/f03.tar",
    ]
    assert [template.at(i) for i in range(6)] == list(template)
    assert template.first() == "d1/f01.tar"
    assert template.last() == "d2/f03.tar"


def test_template_three_ranges_with_steps() -> None:
    template = parse_template("{0..1}{0..4..2}{7..8}")
    expected = [f"{a}{b}{c}" for a in (0, 1) for b in (0, 2, 4) for c in (7, 8)]
    assert list(template) == expected
    assert template.count == 12


def test_template_segments() -> None:
    template = parse_template("a{1..2}b{3..4..1}c")
    kinds = [type(s).__name__ for s in template.segments]
    assert kinds == ["str", "BraceRange", "str", "BraceRange", "str"]
    assert template.segments[0] == "a" and template.segments[-1] == "c"


def test_template_large_count_is_arithmetic_and_lazy() -> None:
    # lazy = nothing expanded: memory, not wall-clock time, tells (a list of
    # a million names would take ~80 MB)
    tracemalloc.start()
    template = parse_template("http://h/shard-{1..1000000}.tar")
    assert template.count == 1_000_000
    iterator = iter(template)
    assert [next(iterator) for _ in range(3)] == [
        "http://h/shard-1.tar",
        "http://h/shard-2.tar",
        "http://h/shard-3.tar",
    ]
    assert template.at(999_999) == "http://h/shard-1000000.tar"
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20, peak


def test_template_at_the_cap_is_allowed_and_lazy() -> None:
    template = parse_template("{1..10000}-{1..1000}")
    assert template.count == MAX_TEMPLATE_OBJECTS
    assert next(iter(template)) == "1-1"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("x{1..10000001}", "more than the limit"),
        ("x{1..5000}-{1..5000}", "more than the limit"),
        ("x{1..100000000000000000000}", "more than the limit"),
        ("x{5..1}", "range {5..1} has start > end"),
        ("x{1..5..0}", "range {1..5..0} has step 0"),
        ("x{-1..5}", "negative"),
        ("x{1..5..-1}", "negative"),
        ("x{a..e}", "only decimal"),
        ("x{1..e}", "only decimal"),
        ("http://h/file.tar", "no brace range"),
        ("x{1,2,3}", "no brace range"),
    ],
)
def test_template_refuses(text: str, reason: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_template(text)
    assert info.value.field == "template"
    assert reason in info.value.reason
    assert str(info.value).startswith("template: ")


@pytest.mark.parametrize(
    ("text", "brace", "position"),
    [
        ("http://127.0.0.1/x-{{1..10}", "{", 20),
        ("http://127.0.0.1/x-{1..10}}", "}", 27),
        ("http://h/}{1..3}", "}", 10),
        ("http://h/x-{1..2}{", "{", 18),
        ("http://h/{1..2}-{a,b}-{1..2}", "{", 17),  # a list between two ranges
        ("http://h/x{1..2}}y{3..4}", "}", 17),
        ("{1..2}-{a}", "{", 8),  # (were kept literally: 1-{a}, 2-{a})
    ],
)
def test_template_refuses_a_stray_brace_naming_it_and_its_position(text: str, brace: str, position: int) -> None:
    """Taken literally, a stray brace made every link wrong (x-{1, x-{2...)."""
    assert text[position - 1] == brace  # (the position counts from 1)
    with pytest.raises(SpecError) as info:
        parse_template(text)
    assert info.value.field == "template"
    assert info.value.reason.startswith(f"{text!r}: stray {brace!r} at position {position}: "), info.value.reason


def test_template_parse_classmethod_names_the_field() -> None:
    assert Template.parse("{1..3}").count == 3
    with pytest.raises(SpecError) as info:
        Template.parse("{3..1}", field="objects")
    assert str(info.value) == "objects: range {3..1} has start > end"


# -------------------------------------------------------------------- links


@pytest.mark.parametrize(
    ("link", "normalized"),
    [
        ("example.com/a.tar", "http://example.com/a.tar"),
        ("  example.com/a.tar\n", "http://example.com/a.tar"),
        ("localhost:8080/a.tar", "http://localhost:8080/a.tar"),
        ("//example.com/a", "http://example.com/a"),
        ("HTTPS://example.com/a", "https://example.com/a"),
        ("https://example.com/a?x=1", "https://example.com/a?x=1"),
        ("s3://bucket/key.tar", "s3://bucket/key.tar"),
        ("gs://bucket/key", "gs://bucket/key"),
        ("az://container/key", "az://container/key"),
        ("hf://datasets/org/name/file.json", "hf://datasets/org/name/file.json"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("http://169.253.1.1/x", "http://169.253.1.1/x"),
    ],
)
def test_normalize_link(link: str, normalized: str) -> None:
    assert normalize_link(link, "link") == normalized
    assert normalize_link(normalized, "link") == normalized  # idempotent


def test_links_and_redirects_share_what_goes_on_the_wire() -> None:
    """A job's link and a redirect's Location have the same characters
    percent-encoded, by one definition (the net module's, which the spec
    imports), not two copies that could drift apart."""
    from dlengine.net import redirects
    from dlengine.spec import names

    assert names.NOT_ON_THE_WIRE is redirects.NOT_ON_THE_WIRE
    assert normalize_link("http://h/a b/\u00e9.txt", "link") == "http://h/a%20b/%C3%A9.txt"
    # (a Location's raw UTF-8, read as Latin-1: a character a byte)
    assert redirects.next_hop("http://h/x", 302, "/a b/\u00c3\u00a9.txt", 0) == "http://h/a%20b/%C3%A9.txt"


@pytest.mark.parametrize(
    ("link", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("file:///etc/passwd", "'file'"),
        ("ftp://host/x", "'ftp'"),
        ("data:text/plain,hello", "'data'"),
        ("javascript:alert(1)", "'javascript'"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("169.254.169.254/latest", "link-local"),
        ("http://[fe80::1]/x", "link-local"),
        ("http://[::ffff:169.254.169.254]/x", "link-local"),
        ("http://2852039166/x", "link-local"),
        ("http://metadata.google.internal/x", "metadata"),
        ("http:///path", "no host"),
        ("https://", "no host"),
        ("http://host:99999/x", "port"),
        ("http://host/a\nb", "control character"),
        ("s3:///key", "no bucket"),
    ],
)
def test_normalize_link_refuses(link: str, reason: str) -> None:
    with pytest.raises(SpecError) as info:
        normalize_link(link, "link")
    assert info.value.field == "link"
    assert reason in info.value.reason


@pytest.mark.parametrize(
    ("link", "name"),
    [
        ("http://h/a/b/file.tar", "file.tar"),
        ("http://h/file.tar?X-Amz-Signature=abc&x=1", "file.tar"),
        ("http://h/file.tar#part2", "file.tar"),
        ("http://h/dir/my%20file%2B1.tar?x#y", "my file+1.tar"),
        ("http://h/caf%C3%A9.txt", "café.txt"),
        ("s3://bucket/k/x.tar", "x.tar"),
        ("gs://bucket/x", "x"),
        ("hf://datasets/org/name/data/train.parquet", "train.parquet"),
        ("http://h/a/dir/", "dir"),  # AIStore's path.Base: the last segment before the '/'
    ],
)
def test_derive_name(link: str, name: str) -> None:
    assert derive_name(link) == name


@pytest.mark.parametrize("link", ["http://h/", "http://h", "http://h/?file=x", "s3://bucket"])
def test_derive_name_refuses(link: str) -> None:
    with pytest.raises(SpecError) as info:
        derive_name(link)
    assert info.value.field == "link"
    assert "cannot derive" in info.value.reason


# -------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["a", "a/b/c.tar", "x..y", "..x", ".hidden", "é" * 127, "a" * 255, "sp ace"])
def test_valid_object_names(name: str) -> None:
    validate_object_name(name, "object_name")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        ("..", "'..' segment"),
        ("a/../b", "'..' segment"),
        ("../etc/passwd", "'..' segment"),
        (".", "'.' segment"),
        ("a/./b", "'.' segment"),
        ("/etc/passwd", "absolute"),
        ("a/b/", "ends with '/'"),
        ("a//b", "empty segment"),
        ("a\x00b", "NUL"),
        ("a\\..\\b", "backslash"),
        ("a" * 256, "255 bytes"),
        ("é" * 128, "255 bytes"),
        ("/".join(["a" * 200] * 6), "1024 bytes"),
        ("\ud800", "not valid Unicode"),
    ],
)
def test_invalid_object_names(name: str, reason: str) -> None:
    with pytest.raises(SpecError) as info:
        validate_object_name(name, "object_name")
    assert info.value.field == "object_name"
    assert reason in info.value.reason


@pytest.mark.parametrize(
    ("subdir", "joined"),
    [("some/subdir/", "some/subdir/x"), ("some/subdir", "some/subdir/x"), ("", "x")],
)
def test_join_subdir(subdir: str, joined: str) -> None:
    assert join_subdir(subdir, "x") == joined


@pytest.mark.parametrize("subdir", ["/abs", "a//b", "../up", "a/../b", "//"])
def test_join_subdir_refuses(subdir: str) -> None:
    with pytest.raises(SpecError) as info:
        join_subdir(subdir, "x")
    assert info.value.field == "subdir"


@pytest.mark.parametrize(
    ("name", "provider"),
    [("abc", "ais"), ("a.b-c_D9", "aws"), ("x" * 255, "gcp"), ("org/model", "hf"), ("gpt2", "hf")],
)
def test_valid_bucket_names(name: str, provider: str) -> None:
    validate_bucket_name(name, provider)


@pytest.mark.parametrize(
    ("name", "provider"),
    [
        ("", "ais"),
        (".", "ais"),
        ("..", "azure"),
        ("a/b", "ais"),
        ("a b", "ais"),
        ("x" * 256, "ais"),
        ("a/b/c", "hf"),
        ("org/..", "hf"),
        ("org/a..b", "hf"),
        ("/name", "hf"),
        ("org/", "hf"),
        ("org/na me", "hf"),
    ],
)
def test_invalid_bucket_names(name: str, provider: str) -> None:
    with pytest.raises(SpecError) as info:
        validate_bucket_name(name, provider)
    assert info.value.field == "bucket.name"


@pytest.mark.parametrize(
    ("header", "secret"),
    [
        ("Authorization", True),
        ("proxy-authorization", True),
        ("Cookie", True),
        ("X-Auth-Token", True),
        ("X-Api-Key", True),
        ("x-apikey", True),
        ("X-Client-Secret", True),
        ("X-Password", True),
        ("X-Amz-Server-Side-Encryption-Customer-Key", True),
        ("Accept", False),
        ("User-Agent", False),
        ("Range", False),
        ("X-Request-Id", False),
    ],
)
def test_is_secret_header(header: str, secret: bool) -> None:
    assert is_secret_header(header) is secret


# ---------------------------------------------------------- parse: common


def test_single_minimal() -> None:
    spec = parse_job(job(type="single", link="http://h/dir/file.tar?sig=1"))
    assert spec == JobSpec(
        type=JobType.SINGLE,
        bucket=BucketRef("abc", "ais", ""),
        description="http://h/dir/file.tar?sig=*** -> ais://abc/file.tar",  # AIStore's "<link> -> <bucket>/<object>"
        link="http://h/dir/file.tar?sig=1",
        object_name="file.tar",
    )


def test_single_full() -> None:
    spec = load_job(
        json.dumps(
            {
                "type": "single",
                "bucket": {"name": "abc", "provider": "ais", "namespace": "ns1"},
                "link": "example.com/x.bin",
                "object_name": "models/x.bin",
                "description": "my job",
                "timeout": "1h30m",
                "limits": {"connections": 4, "bytes_per_hour": 1000},
            }
        )
    )
    assert spec.link == "http://example.com/x.bin"
    assert spec.object_name == "models/x.bin"
    assert spec.description == "my job"
    assert spec.timeout == 5400.0
    assert spec.limits == Limits(4, 1000)
    assert spec.bucket == BucketRef("abc", "ais", "ns1")
    assert spec.bucket.uri() == "ais://@ns1#abc"


def test_aistore_go_client_body_is_accepted() -> None:
    # What AIStore's Go client marshals: every field, zero values included.
    spec = parse_job(
        {
            "type": "single",
            "bucket": {"name": "abc", "provider": "ais", "namespace": {"uuid": "", "name": ""}},
            "description": "",
            "timeout": "",
            "progress_interval": "",
            "limits": {"connections": 0, "bytes_per_hour": 0},
            "headers": {"Accept": ["application/octet-stream"]},
            "object_name": "",
            "link": "http://h/x",
            "from_remote": False,
        }
    )
    assert spec.object_name == "x"
    assert spec.headers == {"Accept": "application/octet-stream"}
    assert spec.description == "http://h/x -> ais://abc/x"


@pytest.mark.parametrize(("namespace", "expected"), [("ns", "ns"), ({"name": "ns"}, "ns"), (None, ""), ("", "")])
def test_namespace_forms(namespace: object, expected: str) -> None:
    bucket = {"name": "abc", "namespace": namespace}
    spec = parse_job({"type": "single", "bucket": bucket, "link": "http://h/x"})
    assert spec.bucket.namespace == expected


@pytest.mark.parametrize(
    ("alias", "provider"),
    [
        ("aws", "aws"),
        ("s3", "aws"),
        ("gcp", "gcp"),
        ("gs", "gcp"),
        ("gcs", "gcp"),
        ("azure", "azure"),
        ("az", "azure"),
        ("AZ", "azure"),
    ],
)
def test_provider_aliases(alias: str, provider: str) -> None:
    spec = parse_job({"type": "backend", "bucket": {"name": "b", "provider": alias}})
    assert spec.bucket.provider == provider


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        ([], "json", "must be a JSON object"),
        ("single", "json", "must be a JSON object"),
        ({"bucket": BUCKET, "link": "h/x"}, "type", "is required"),
        (job(type="batch"), "type", "single, multi, range, backend"),
        (job(type=1), "type", "unknown job type"),
        ({"type": "single", "link": "h/x"}, "bucket.name", "is required"),
        ({"type": "single", "bucket": {}, "link": "h/x"}, "bucket.name", "is required"),
        ({"type": "single", "bucket": {"name": 5}, "link": "h/x"}, "bucket.name", "string"),
        ({"type": "single", "bucket": "abc", "link": "h/x"}, "bucket", "must be an object"),
        (
            {"type": "single", "bucket": {"name": "abc", "region": "x"}, "link": "h/x"},
            "bucket.region",
            "unknown field",
        ),
        (
            {"type": "single", "bucket": {"name": "abc", "provider": "dropbox"}, "link": "h/x"},
            "bucket.provider",
            "unknown provider",
        ),
        (
            {"type": "single", "bucket": {"name": "abc", "provider": "hf"}, "link": "h/x"},
            "bucket.provider",
            "local 'ais' bucket",
        ),
        (
            {"type": "single", "bucket": {"name": "a/b"}, "link": "h/x"},
            "bucket.name",
            "invalid bucket name",
        ),
        (
            {
                "type": "single",
                "bucket": {"name": "abc", "namespace": {"uuid": "remote", "name": "x"}},
                "link": "h/x",
            },
            "bucket.namespace.uuid",
            "not supported",
        ),
        (job(type="single", link="h/x", timeout="soon"), "timeout", "invalid duration"),
        (job(type="single", link="h/x", timeout=-1), "timeout", "negative"),
        (job(type="single", link="h/x", timeout=True), "timeout", "duration"),
        (job(type="single", link="h/x", limits=[]), "limits", "must be an object"),
        (job(type="single", link="h/x", limits={"connections": -1}), "limits.connections", "must be >= 0"),
        (job(type="single", link="h/x", limits={"connections": True}), "limits.connections", "boolean"),
        (job(type="single", link="h/x", limits={"connections": 1.5}), "limits.connections", "integer"),
        (job(type="single", link="h/x", limits={"connections": "4"}), "limits.connections", "integer"),
        (
            job(type="single", link="h/x", limits={"bytes_per_hour": -5}),
            "limits.bytes_per_hour",
            "must be >= 0",
        ),
        (
            job(type="single", link="h/x", limits={"bytes_per_hour": False}),
            "limits.bytes_per_hour",
            "integer",
        ),
        (job(type="single", link="h/x", limits={"conns": 1}), "limits.conns", "unknown field"),
        (job(type="single", link="h/x", description=5), "description", "must be a string"),
        (job(type="single", link="h/x", headers=["a"]), "headers", "must be an object"),
        (job(type="single", link="h/x", headers={"Bad Name": "v"}), "headers.Bad Name", "header name"),
        (job(type="single", link="h/x", headers={"X-A": "v\r\nX-B: 1"}), "headers.X-A", "CR, LF"),
        (job(type="single", link="h/x", headers={"X-A": 1}), "headers.X-A", "string"),
        (
            job(type="single", link="h/x", headers={"Accept": "a", "accept": "b"}),
            "headers.accept",
            "more than once",
        ),
        (job(type="single", link="h/x", etl_name="md5"), "etl_name", "not supported"),
        (job(type="single", link="h/x", from_remote=True), "from_remote", "not supported"),
        (job(type="single", link="h/x", progress_interval="often"), "progress_interval", "duration"),
    ],
)
def test_common_field_errors(data: object, field: str, reason: str) -> None:
    error = spec_error(data)
    assert error.field == field
    assert reason in error.reason


def test_unknown_field_lists_known_fields_of_the_type() -> None:
    error = spec_error(job(type="single", link="h/x", template="h/{1..2}", foo=1))
    assert error.field == "template"
    assert "'template', 'foo'" in error.reason
    assert "for a single job" in error.reason
    assert "link, object_name" in error.reason


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (job(type="multi", objects=["h/x"], link="h/x"), "link"),
        (job(type="range", template="h/{1..2}", object_name="x"), "object_name"),
        (job(type="single", link="h/x", prefix="p"), "prefix"),
        (
            {"type": "backend", "bucket": {"name": "b", "provider": "aws"}, "revision": "main"},
            "revision",
        ),
        (
            {"type": "backend", "bucket": {"name": "b", "provider": "aws"}, "subdir": "x"},
            "subdir",
        ),
    ],
)
def test_fields_of_another_type_are_refused(data: object, field: str) -> None:
    error = spec_error(data)
    assert error.field == field
    assert "unknown field" in error.reason


def test_headers_are_split_into_plain_and_secret() -> None:
    headers = {
        "Authorization": "Bearer hunter2",
        "X-Api-Key": "k",
        "Cookie": "c=1",
        "Accept": ["a/b", "c/d"],
        "User-Agent": "dl",
    }
    spec = parse_job(job(type="single", link="h/x", headers=headers))
    assert spec.headers == {"Accept": "a/b, c/d", "User-Agent": "dl"}
    assert spec.secret_headers == {
        "Authorization": "Bearer hunter2",
        "X-Api-Key": "k",
        "Cookie": "c=1",
    }


def test_secret_header_value_never_in_error_message() -> None:
    error = spec_error(job(type="single", link="h/x", headers={"Authorization": "s3cr3t\n"}))
    assert error.field == "headers.Authorization"
    assert "s3cr3t" not in str(error)


def test_limits_accept_size_strings() -> None:
    spec = parse_job(job(type="single", link="h/x", limits={"bytes_per_hour": "1GiB"}))
    assert spec.limits == Limits(0, 1 << 30)


# ---------------------------------------------------------- parse: single


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        (job(type="single"), "link", "is required"),
        (job(type="single", link=""), "link", "is required"),
        (job(type="single", link=5), "link", "must be a string"),
        (job(type="single", link="ftp://h/x"), "link", "'ftp'"),
        (job(type="single", link="http://169.254.169.254/x"), "link", "link-local"),
        (job(type="single", link="http://h/"), "link", "cannot derive"),
        (job(type="single", link="http://h/%2e%2e"), "link", "'..' segment"),
        (job(type="single", link="http://h/a%00b"), "link", "NUL"),
        (job(type="single", link="h/x", object_name="../x"), "object_name", "'..' segment"),
        (job(type="single", link="h/x", object_name="/x"), "object_name", "absolute"),
        (job(type="single", link="h/x", object_name="x/"), "object_name", "ends with '/'"),
        (job(type="single", link="h/x", object_name="a\x00"), "object_name", "NUL"),
        (job(type="single", link="h/x", object_name=3), "object_name", "string"),
    ],
)
def test_single_errors(data: object, field: str, reason: str) -> None:
    error = spec_error(data)
    assert error.field == field
    assert reason in error.reason


def test_single_cloud_link() -> None:
    spec = parse_job(job(type="single", link="s3://bkt/a/b/x.tar"))
    assert (spec.link, spec.object_name) == ("s3://bkt/a/b/x.tar", "x.tar")
    assert list(iter_objects(spec)) == [ObjectRef("x.tar", "s3://bkt/a/b/x.tar")]
    assert object_count(spec) == 1


# ----------------------------------------------------------- parse: multi


def test_multi_map() -> None:
    spec = parse_job(job(type="multi", objects={"a/x.tar": "h/1", "b": "https://h/2"}))
    assert spec.objects == (
        ObjectRef("a/x.tar", "http://h/1"),
        ObjectRef("b", "https://h/2"),
    )
    assert spec.description == "multi-download -> ais://abc"
    assert list(iter_objects(spec)) == list(spec.objects)
    assert object_count(spec) == 2


def test_multi_list_derives_names() -> None:
    spec = parse_job(job(type="multi", objects=["h/d/x.tar?s=1", "gs://b/y%20z"]))
    assert spec.objects == (
        ObjectRef("x.tar", "http://h/d/x.tar?s=1"),
        ObjectRef("y z", "gs://b/y%20z"),
    )


def test_multi_list_duplicate_names() -> None:
    objects = ["http://a/x.tar", "http://b/x.tar", "http://a/y", "http://c/y", "http://a/z"]
    error = spec_error(job(type="multi", objects=objects))
    assert (error.field, error.reason) == ("objects", "duplicate object names: x.tar, y")


def test_multi_map_duplicate_keys_in_json() -> None:
    text = '{"type": "multi", "bucket": {"name": "abc"}, "objects": {"a": "h/1", "b": "h/2", "a": "h/3"}}'
    with pytest.raises(SpecError) as info:
        load_job(text)
    assert (info.value.field, info.value.reason) == ("objects", "duplicate object names: a")


def test_multi_duplicates_listed_up_to_ten() -> None:
    objects = [f"http://{host}/f{i}" for i in range(12) for host in ("a", "b")]
    error = spec_error(job(type="multi", objects=objects))
    assert error.reason == ("duplicate object names: " + ", ".join(f"f{i}" for i in range(10)) + " (and 2 more)")


@pytest.mark.parametrize(
    ("objects", "field", "reason"),
    [
        (None, "objects", "is required"),
        ([], "objects", "must not be empty"),
        ({}, "objects", "must not be empty"),
        ("h/x", "objects", "map"),
        ([5], "objects[0]", "link string"),
        (["h/x", "ftp://h/y"], "objects[1]", "'ftp'"),
        (["h/"], "objects[0]", "cannot derive"),
        ({"x": 5}, 'objects["x"]', "link string"),
        ({"../x": "h/x"}, 'objects["../x"]', "'..' segment"),
        ({"": "h/x"}, 'objects[""]', "empty"),
        ({"a/": "h/x"}, 'objects["a/"]', "ends with '/'"),
        ({"/a": "h/x"}, 'objects["/a"]', "absolute"),
        ({"a\x00": "h/x"}, 'objects["a\\u0000"]', "NUL"),
        ({"x": "http://[fe80::1]/x"}, 'objects["x"]', "link-local"),
    ],
)
def test_multi_errors(objects: object, field: str, reason: str) -> None:
    data = job(type="multi") if objects is None else job(type="multi", objects=objects)
    error = spec_error(data)
    assert error.field == field
    assert reason in error.reason


# ----------------------------------------------------------- parse: range


def test_range_job() -> None:
    spec = parse_job(job(type="range", template="h/abc/shard-{001..003}.tar?x=1", subdir="some/subdir/"))
    assert spec.template == "http://h/abc/shard-{001..003}.tar?x=1"
    assert spec.description == "http://h/abc/shard-{001..003}.tar?x=1 -> ais://abc"
    assert list(iter_objects(spec)) == [
        ObjectRef(f"some/subdir/shard-00{i}.tar", f"http://h/abc/shard-00{i}.tar?x=1") for i in (1, 2, 3)
    ]
    assert object_count(spec) == 3


@pytest.mark.parametrize("subdir", ["", "sub", "sub/"])
@pytest.mark.parametrize("template", ["h/a/f%20{1..3}-{0..1}.bin", "h/a/f%20{1..3}-{0..1}.bin?q=/x#frag"])
def test_range_names_match_derive_name(subdir: str, template: str) -> None:
    spec = parse_job(job(type="range", template=template, subdir=subdir))
    prefix = subdir.rstrip("/") + "/" if subdir else ""
    objects = list(iter_objects(spec))
    assert [o.name for o in objects[:3]] == [prefix + n for n in ("f 1-0.bin", "f 1-1.bin", "f 2-0.bin")]
    assert all(o.name == prefix + derive_name(o.link) for o in objects)
    assert len({o.name for o in objects}) == len(objects) == object_count(spec) == 6


def test_range_names_in_two_directories_collide() -> None:
    error = spec_error(job(type="range", template="h/{1..2}/f-{1..3}.tar"))
    assert error.field == "template"
    assert "6 objects would share 3 names" in error.reason


def test_range_range_only_in_directory_is_refused() -> None:
    error = spec_error(job(type="range", template="http://h/{1..5}/x.tar", subdir="d"))
    assert error.field == "template"
    assert error.reason == ("every object would get the same name 'd/x.tar': put a range in the last path segment")


def test_range_range_only_in_query_is_refused() -> None:
    error = spec_error(job(type="range", template="http://h/get?part={1..5}"))
    assert "every object would get the same name 'get'" in error.reason


def test_range_single_object_in_directory_is_fine() -> None:
    spec = parse_job(job(type="range", template="http://h/{7..7}/x.tar"))
    assert list(iter_objects(spec)) == [ObjectRef("x.tar", "http://h/7/x.tar")]


def test_range_host_ranges_are_checked() -> None:
    error = spec_error(job(type="range", template="http://169.254.0.{1..3}/f-{1..3}"))
    assert "link-local" in error.reason
    # Any range outside the last segment repeats names: mirrors included.
    error = spec_error(job(type="range", template="http://mirror{1..3}.example.com/f-{1..3}"))
    assert "9 objects would share 3 names" in error.reason


def test_range_million_objects_parse_without_expanding() -> None:
    tracemalloc.start()  # a million ObjectRefs would take hundreds of MB
    spec = parse_job(job(type="range", template="h/s-{1..1000000}.tar"))
    assert object_count(spec) == 1_000_000
    first = list(itertools.islice(iter_objects(spec), 3))
    assert [o.name for o in first] == ["s-1.tar", "s-2.tar", "s-3.tar"]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20, peak


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({}, "template", "is required"),
        ({"template": ""}, "template", "is required"),
        ({"template": 7}, "template", "must be a string"),
        ({"template": "h/file.tar"}, "template", "no brace range"),
        ({"template": "h/s-{5..1}"}, "template", "range {5..1} has start > end"),
        ({"template": "h/s-{1..5..0}"}, "template", "step 0"),
        ({"template": "h/s-{1..10000001}"}, "template", "more than the limit"),
        ({"template": "h/{1..4000}/s-{1..4000}"}, "template", "more than the limit"),
        ({"template": "ftp://h/s-{1..3}"}, "template", "'ftp'"),
        ({"template": "http://h/s-{1..3}/"}, "template", "ends with '/'"),
        ({"template": "h/s-{1..3}", "subdir": "/abs"}, "subdir", "absolute"),
        ({"template": "h/s-{1..3}", "subdir": "a/../b"}, "subdir", "'..' segment"),
        ({"template": "h/s-{1..3}", "subdir": 5}, "subdir", "must be a string"),
        ({"template": "h/" + "x" * 300 + "{1..3}"}, "template", "255 bytes"),
    ],
)
def test_range_errors(fields: dict[str, Any], field: str, reason: str) -> None:
    error = spec_error(job(type="range", **fields))
    assert error.field == field
    assert reason in error.reason


# --------------------------------------------------------- parse: backend


def test_backend_job() -> None:
    spec = parse_job(
        {
            "type": "backend",
            "bucket": {"name": "lpr-vision", "provider": "gcp"},
            "prefix": "imagenet/train-",
            "suffix": ".tgz",
            "synchronize": True,
        }
    )
    assert spec.bucket == BucketRef("lpr-vision", "gcp")
    assert (spec.prefix, spec.suffix, spec.sync) == ("imagenet/train-", ".tgz", True)
    assert spec.description == "remote bucket prefetch -> gs://lpr-vision"
    assert spec.options == {}
    assert list(iter_objects(spec)) == []
    assert object_count(spec) is None


def test_backend_hf_defaults_and_options() -> None:
    bucket = {"name": "org/data", "provider": "hf"}
    spec = parse_job({"type": "backend", "bucket": bucket})
    assert spec.options == {"repo_type": "model", "revision": "main", "include": [], "exclude": []}
    spec = parse_job(
        {
            "type": "backend",
            "bucket": bucket,
            "repo_type": "dataset",
            "revision": "refs/pr/1",
            "include": ["*.json", "data/*"],
            "exclude": "*.bin",
        }
    )
    assert spec.options == {
        "repo_type": "dataset",
        "revision": "refs/pr/1",
        "include": ["*.json", "data/*"],
        "exclude": ["*.bin"],
    }


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        ({"type": "backend", "bucket": {"name": "b"}}, "bucket.provider", "remote provider"),
        (
            {"type": "backend", "bucket": {"name": "b", "provider": "ais"}},
            "bucket.provider",
            "remote provider",
        ),
        (
            {"type": "backend", "bucket": {"name": "b", "provider": "aws"}, "sync": "yes"},
            "sync",
            "true or false",
        ),
        (
            {
                "type": "backend",
                "bucket": {"name": "b", "provider": "aws"},
                "sync": True,
                "synchronize": False,
            },
            "synchronize",
            "contradicts",
        ),
        (
            {"type": "backend", "bucket": {"name": "b", "provider": "aws"}, "prefix": 1},
            "prefix",
            "string",
        ),
        (
            {"type": "backend", "bucket": {"name": "a/b/c", "provider": "hf"}},
            "bucket.name",
            "repo id",
        ),
        (
            {"type": "backend", "bucket": {"name": "o/n", "provider": "hf"}, "repo_type": "space"},
            "repo_type",
            "model, dataset",
        ),
        (
            {"type": "backend", "bucket": {"name": "o/n", "provider": "hf"}, "include": [1]},
            "include",
            "glob",
        ),
        (
            {"type": "backend", "bucket": {"name": "o/n", "provider": "hf"}, "revision": "a b"},
            "revision",
            "invalid revision",
        ),
    ],
)
def test_backend_errors(data: object, field: str, reason: str) -> None:
    error = spec_error(data)
    assert error.field == field
    assert reason in error.reason


# ------------------------------------------------------------------- JSON


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"type": "single",', "malformed JSON"),
        ("", "malformed JSON"),
        ('{"type": "single" "x": 1}', "line 1 column 19"),
        ('{\n"a": 1\n"b": 2}', "line 3 column 1"),
        ('{"timeout": NaN}', "NaN is not valid JSON"),
        (b'{"type": "\xff"}', "not valid UTF-8"),
        ("[" * 100_000, "malformed JSON"),
    ],
)
def test_load_job_malformed(text: str | bytes, reason: str) -> None:
    with pytest.raises(SpecError) as info:
        load_job(text)
    assert info.value.field == "json"
    assert reason in info.value.reason


def test_load_job_accepts_bytes_and_bom() -> None:
    body = json.dumps(job(type="single", link="h/x"))
    assert load_job(body.encode()) == load_job("\ufeff" + body) == load_job(body)
    assert load_job(b"\xef\xbb\xbf" + body.encode()).object_name == "x"


def test_load_job_duplicate_top_level_key() -> None:
    with pytest.raises(SpecError) as info:
        load_job('{"type": "single", "bucket": {"name": "a"}, "link": "h/x", "link": "h/y"}')
    assert (info.value.field, info.value.reason) == ("link", "given more than once")


# ------------------------------------------------------------- round trip

ROUND_TRIP_BODIES: list[dict[str, Any]] = [
    job(type="single", link="h/x.tar"),
    job(
        type="single",
        link="https://h/x.tar?sig=1",
        object_name="dir/x",
        timeout="1m30s",
        limits={"connections": 3, "bytes_per_hour": "2GiB"},
        headers={"Authorization": "Bearer t", "Accept": ["a", "b"]},
        description="custom",
    ),
    job(type="single", link="h/x", timeout=0.1),
    job(type="multi", objects=["h/a", "s3://b/c/d.tar"]),
    job(type="multi", objects={"n/1": "h/a", "n/2": "h/a"}, headers={"Cookie": "c"}),
    {
        "type": "range",
        "bucket": {"name": "abc", "namespace": {"name": "ns"}},
        "template": "h/s-{001..100..3}.tar",
        "subdir": "d/",
        "timeout": 2.5,
    },
    {"type": "backend", "bucket": {"name": "b", "provider": "s3"}, "prefix": "p/", "sync": True},
    {
        "type": "backend",
        "bucket": {"name": "org/m", "provider": "hf"},
        "repo_type": "dataset",
        "include": ["*.md"],
        "headers": {"X-Trace": "1", "X-HF-Token": "t"},
    },
]


@pytest.mark.parametrize("body", ROUND_TRIP_BODIES)
def test_spec_to_dict_round_trip(body: dict[str, Any]) -> None:
    spec = parse_job(body)
    written = spec_to_dict(spec)
    again = load_job(json.dumps(written))  # must survive real JSON too
    assert again == dataclasses.replace(spec, secret_headers={})
    assert spec_to_dict(again) == written  # canonical: a fixed point


def test_spec_to_dict_never_contains_secrets() -> None:
    headers = {"Authorization": "Bearer hunter2", "X-Api-Key": "k3y", "Accept": "x"}
    spec = parse_job(job(type="single", link="h/x", headers=headers))
    text = json.dumps(spec_to_dict(spec))
    assert "hunter2" not in text and "k3y" not in text
    assert "Authorization" not in text and "X-Api-Key" not in text
    assert spec_to_dict(spec)["headers"] == {"Accept": "x"}


def test_spec_to_dict_shape() -> None:
    spec = parse_job(job(type="single", link="h/x", timeout="90s"))
    assert spec_to_dict(spec) == {
        "type": "single",
        "bucket": {"name": "abc", "provider": "ais"},
        "description": "http://h/x -> ais://abc/x",
        "timeout": "1m30s",
        "limits": {"connections": 0, "bytes_per_hour": 0},
        "headers": {},
        "link": "http://h/x",
        "object_name": "x",
    }


def test_parse_job_does_not_mutate_input() -> None:
    body = job(type="multi", objects=["h/a"], headers={"Authorization": "x"})
    snapshot = json.dumps(body)
    parse_job(body)
    assert json.dumps(body) == snapshot


@pytest.mark.parametrize(
    ("template", "ok"),
    [
        ("http://h/x{1..12}{1..12}", False),  # 1|11 and 11|1 both give x111
        ("http://h/x{1..9}{1..12}", True),  # fixed width on the left
        ("http://h/x{1..12}{10..12}", True),  # fixed width on the right
        ("http://h/x{1..12}-{1..12}", True),  # a separator
        ("http://h/x{001..012}{1..12}", True),  # zero padding
        ("http://h/x{1..12}5{10..12}", True),  # digits then a fixed-width tail
    ],
)
def test_adjacent_ranges_that_could_repeat_names(template: str, ok: bool) -> None:
    job = {"type": "range", "bucket": {"name": "b"}, "template": template}
    if ok:
        parse_job(job)
    else:
        with pytest.raises(SpecError, match="duplicate object names possible"):
            parse_job(job)


def test_unprintable_finds_every_ascii_control_and_nothing_else() -> None:
    """The ASCII fast path of ``names.unprintable`` answers as the per-character
    reading does: every C0 control and DEL found, in a key or alone, every
    printable character (space included) passed."""
    from dlengine.spec.names import unprintable, validate_object_name

    for code in [*range(0x20), 0x7F]:
        char = chr(code)
        assert unprintable(char) == char
        assert unprintable(f"dir/obj{char}.bin") == char
        if code:  # (NUL has its own message)
            with pytest.raises(SpecError, match=f"U\\+{code:04X}"):
                validate_object_name(f"dir/obj{char}.bin", "key")
    printable = "".join(chr(code) for code in range(0x20, 0x7F))
    assert unprintable(printable) is None
    assert unprintable("a\u202eb") == "\u202e" and unprintable("caf\u00e9\u0085") == "\u0085"

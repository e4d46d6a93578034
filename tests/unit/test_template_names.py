"""Range templates: what submission accepts, the dispatcher can insert
(issue 13). For random templates, either submission refuses with a
``SpecError`` naming the field, or the names the dispatcher renders and
percent-decodes are all distinct, valid, free of control characters and
``..`` segments, and equal to the names derived at submission."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dlengine.errors import SpecError
from dlengine.ledger import jobs
from dlengine.spec import iter_objects, object_count, parse_job, range_pairs, validate_object_name
from dlengine.spec.names import derive_name, join_subdir, unprintable
from dlengine.supervisor import dispatch

EXAMPLES = int(os.environ.get("DLENGINE_FUZZ_EXAMPLES", "400"))
MAX_OBJECTS = 2000

# literal pieces chosen to meet the traps: escapes of '/', '.', digits, '%',
# controls, '?' and '#', separators, and digits right after a range
LITERALS = st.sampled_from(
    ["a", "x", "-", "_", ".", "..", "/", "%", "2", "F", "4", "0", "1",
     "%2F", "%2E", "%2e", "%31", "%3F", "%23", "%25", "%0A", "%1B", "%7F", "%C2%85", "?", "#", "~"]
)  # fmt: skip


@st.composite
def brace(draw: st.DrawFn) -> str:
    start = draw(st.integers(0, 120))
    end = draw(st.integers(start, start + 120))
    pad = draw(st.sampled_from(["", "0", "00"]))
    step = draw(st.sampled_from(["", "", "..1", "..3", "..10"]))
    return f"{{{pad}{start}..{end}{step}}}"


@st.composite
def templates(draw: st.DrawFn) -> tuple[str, str]:
    pieces = draw(st.lists(LITERALS | brace(), min_size=1, max_size=6))
    subdir = draw(st.sampled_from(["", "", "sub", "sub/", "a/b", "..", "%2E%2E", "a\tb"]))
    return "http://127.0.0.1:9/d/" + "".join(pieces), subdir


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=templates())
def test_accepted_templates_insert_what_submission_checked(case: tuple[str, str]) -> None:
    template, subdir = case
    try:
        spec = parse_job({"type": "range", "bucket": {"name": "b"}, "template": template, "subdir": subdir})
    except SpecError as exc:
        assert exc.field in ("template", "subdir"), exc
        return
    assume((object_count(spec) or 0) <= MAX_OBJECTS)
    objects = list(iter_objects(spec))
    assert list(range_pairs(spec)) == [(o.name, o.link) for o in objects]  # (what the dispatcher inserts)
    names = [o.name for o in objects]
    assert len(set(names)) == len(names), sorted(n for n in names if names.count(n) > 1)[:4]
    for obj in objects:
        validate_object_name(obj.name, "name")
        assert unprintable(obj.name) is None
        assert ".." not in obj.name.split("/")
        assert obj.name == join_subdir(spec.subdir, derive_name(obj.link)), obj


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("http://h/x%{40..49}", "percent-escape"),  # %40..%49: '@', 'A'..'I'
        ("http://h/x%2{0..9}", "percent-escape"),  # %2F is '/' on the way
        ("http://h/{1..12}%31{1..12}", "duplicate"),  # '%31' is the digit 1: 1|1|11 = 11|1|1
        ("http://h/%0Ax{1..3}", "control character"),
        ("http://h/%2E%2E%2F{1..3}", "'..'"),
        ("http://h/x{1..3}%1B[2J", "control character"),
    ],
)
def test_refused_templates(template: str, reason: str) -> None:
    with pytest.raises(SpecError, match=reason) as info:
        parse_job({"type": "range", "bucket": {"name": "b"}, "template": template})
    assert info.value.field == "template"


def test_the_dispatchers_pages_resume_at_their_cursor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "PAGE_SIZE", 4)
    spec = parse_job({"type": "range", "bucket": {"name": "b"}, "template": "http://h/d/o{1..10}.bin", "subdir": "s"})
    pages = list(dispatch.range_pages(spec, SimpleNamespace(cursor=None), None))  # type: ignore[arg-type]
    assert [cursor for _, cursor in pages] == ["4", "8", "10"]
    assert [pair for page, _ in pages for pair in page] == [(o.name, o.link) for o in iter_objects(spec)]
    rest = list(dispatch.range_pages(spec, SimpleNamespace(cursor="8"), None))  # type: ignore[arg-type]
    assert rest == [([("s/o9.bin", "http://h/d/o9.bin"), ("s/o10.bin", "http://h/d/o10.bin")], "10")]

"""quick_init: a frozen dataclass with a cheaper __init__ behaves as one."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass, field

import pytest

from dlengine.ledger.models import Outcome, Task
from dlengine.ledger.states import ObjectState
from dlengine.records import quick_init
from dlengine.sources.base import ObjectInfo, Request


@quick_init
@dataclass(frozen=True)
class _Sample:
    key: str
    size: int | None = None
    tags: dict[str, str] = field(default_factory=dict)


def _twin() -> type:
    @dataclass(frozen=True)
    class _Sample:  # the same class without quick_init
        key: str
        size: int | None = None
        tags: dict[str, str] = field(default_factory=dict)

    return _Sample


def test_same_fields_defaults_and_factories_as_the_dataclass() -> None:
    plain = _twin()
    for args, kwargs in [(("k",), {}), (("k", 3), {}), (("k",), {"size": 4, "tags": {"a": "b"}})]:
        got, want = _Sample(*args, **kwargs), plain(*args, **kwargs)
        assert dataclasses.asdict(got) == dataclasses.asdict(want)
    first, second = _Sample("a"), _Sample("b")
    first.tags["x"] = "y"
    assert second.tags == {}  # a fresh dict each time, as default_factory gives


def test_still_frozen_hashable_comparable_replaceable_and_picklable() -> None:
    sample = _Sample("k", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sample.size = 2  # type: ignore[misc]
    assert sample == _Sample("k", 1) and sample != _Sample("k", 2)
    assert hash(Outcome(1, ObjectState.DONE)) == hash(Outcome(1, ObjectState.DONE))
    assert Request("k", 3) == Request("k", 3)
    assert dataclasses.replace(sample, size=5) == _Sample("k", 5)
    assert pickle.loads(pickle.dumps(sample)) == sample


def test_wrong_calls_fail_as_they_would() -> None:
    with pytest.raises(TypeError):
        _Sample()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        _Sample("k", nope=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        _Sample("k", 1, {}, 2)  # type: ignore[call-arg]


def test_hot_path_classes_keep_their_fields() -> None:
    outcome = Outcome(7, ObjectState.DONE, size=3, mountpath="/m")
    assert (outcome.task_id, outcome.state, outcome.size, outcome.error, outcome.next_try) == (
        7, ObjectState.DONE, 3, None, 0.0,
    )  # fmt: skip
    info = ObjectInfo("k", 10, '"e"')
    assert info.checksums == {} and info.validator == '"e"'
    task = Task(1, "j", 1, "n", "http://h/n", 1, 1, "ais", "", "b", 60.0, 0)
    assert task.connections == 0 and task.stored is None


def test_refuses_what_it_cannot_copy() -> None:
    @dataclass
    class Mutable:
        a: int

    @dataclass(frozen=True)
    class Post:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclass(frozen=True)
    class KwOnly:
        a: int = field(kw_only=True)

    for cls in (Mutable, Post, KwOnly):
        with pytest.raises(TypeError, match="quick_init"):
            quick_init(cls)

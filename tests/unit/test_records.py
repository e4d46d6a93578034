"""quick_init: a frozen dataclass with a cheaper __init__ behaves as one;
frozen and mutable: records built without the dataclasses module or generated
methods behave as the frozen and plain dataclasses."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from dataclasses import dataclass, field

import pytest

from dlengine import records
from dlengine.ledger.models import Outcome, Task
from dlengine.ledger.states import ObjectState
from dlengine.records import frozen, mutable, quick_init
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


@frozen
class _Rec:
    key: str
    size: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    hidden: int = field(default=0, repr=False, compare=False)


@dataclass(frozen=True)
class _Twin:  # what _Rec must behave as
    key: str
    size: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    hidden: int = field(default=0, repr=False, compare=False)


@frozen
class _Point:
    x: int
    y: int = 0


@dataclass(frozen=True)
class _PointTwin:
    x: int
    y: int = 0


def _pair(*args: object, **kwargs: object) -> tuple[_Rec, _Twin]:
    return _Rec(*args, **kwargs), _Twin(*args, **kwargs)  # type: ignore[arg-type]


def test_frozen_is_a_frozen_dataclass() -> None:
    assert dataclasses.is_dataclass(_Rec)
    assert _Rec.__dataclass_params__.frozen and _Rec.__dataclass_params__.eq  # type: ignore[attr-defined]
    assert [(f.name, f.default, f.repr, f.compare) for f in dataclasses.fields(_Rec)] == [
        (f.name, f.default, f.repr, f.compare) for f in dataclasses.fields(_Twin)
    ]
    assert _Rec.__match_args__ == _Twin.__match_args__  # type: ignore[attr-defined]
    assert str(inspect.signature(_Rec)) == str(inspect.signature(_Twin))
    assert _Point.__doc__ == _PointTwin.__doc__.replace("Twin", "")  # type: ignore[union-attr]


def test_frozen_builds_compares_hashes_and_shows_as_the_dataclass() -> None:
    for args, kwargs in [(("k",), {}), (("k", 3), {}), (("k",), {"size": 4, "tags": {"a": "b"}, "hidden": 2})]:
        got, want = _pair(*args, **kwargs)
        assert dataclasses.asdict(got) == dataclasses.asdict(want)
        assert repr(got) == repr(want).replace("_Twin", "_Rec")
        assert dataclasses.replace(got, size=9) == _Rec(got.key, 9, got.tags, got.hidden)
    assert _Rec("k", 1, hidden=1) == _Rec("k", 1, hidden=2)  # compare=False, as there
    assert _Rec("k", 1) != _Rec("k", 2) and _Rec("k") != _Twin("k")
    assert (_Point(1, 2) == (1, 2)) is False and _Point(1, 2).__eq__((1, 2)) is NotImplemented
    assert hash(_Point(1, 2)) == hash(_PointTwin(1, 2)) == hash((1, 2))
    with pytest.raises(TypeError, match="unhashable"):
        hash(_Rec("k"))  # a dict field, as there
    first, second = _Rec("a"), _Rec("b")
    first.tags["x"] = "y"
    assert second.tags == {}
    assert pickle.loads(pickle.dumps(_Point(3, 4))) == _Point(3, 4)
    match _Point(5, 6):
        case _Point(x, y):
            assert (x, y) == (5, 6)


def test_frozen_refuses_assignment_as_the_dataclass() -> None:
    for obj in (_Point(1), _PointTwin(1)):
        for name in ("x", "other"):
            with pytest.raises(dataclasses.FrozenInstanceError, match=f"cannot assign to field '{name}'"):
                setattr(obj, name, 2)
            with pytest.raises(dataclasses.FrozenInstanceError, match=f"cannot delete field '{name}'"):
                delattr(obj, name)

    class Sub(_Point):
        pass

    sub = Sub(1)
    sub.extra = 3  # type: ignore[attr-defined]  # a subclass's own attribute, as there
    with pytest.raises(dataclasses.FrozenInstanceError):
        sub.x = 2  # type: ignore[misc]


def test_frozen_keeps_what_the_class_defines() -> None:
    @frozen
    class Own:
        a: int

        def __repr__(self) -> str:
            return "own"

        def __hash__(self) -> int:
            return 7

    @frozen(repr=False)
    class Secret:
        token: str

    assert repr(Own(1)) == "own" and hash(Own(1)) == 7 and Own(1) == Own(1)
    assert "tok" not in repr(Secret("tok")) and repr(Secret("tok")).startswith("<")
    assert Secret("t") == Secret("t")

    @frozen
    class Loop:
        items: list[object]

    loop = Loop([])
    loop.items.append(loop)
    assert repr(loop) == f"{Loop.__qualname__}(items=[...])"  # as the dataclass's recursion guard shows it


def test_frozen_refuses_what_it_cannot_build() -> None:
    class Post:
        a: int

        def __post_init__(self) -> None:
            pass

    class KwOnly:
        a: int = field(kw_only=True)

    class OwnSetattr:
        a: int

        def __setattr__(self, name: str, value: object) -> None:
            pass

    for cls in (Post, KwOnly, OwnSetattr):
        with pytest.raises(TypeError):
            frozen(cls)


@frozen
class _Own:  # records.field, not dataclasses.field
    key: str
    tags: dict[str, str] = records.field(default_factory=dict)
    hidden: int = records.field(default=0, repr=False, compare=False)


def test_records_field_is_dataclasses_field() -> None:
    assert str(inspect.signature(_Own)) == str(inspect.signature(_Twin)).replace("size: 'int | None' = None, ", "")
    got = _Own("k", hidden=3)
    assert repr(got) == "_Own(key='k', tags={})" and got == _Own("k", hidden=4)
    assert _Own.hidden == 0 and "tags" not in _Own.__dict__  # the class keeps defaults, not the field() specs
    assert [(f.name, f.repr, f.compare) for f in dataclasses.fields(got)] == [
        ("key", True, True), ("tags", True, True), ("hidden", False, False),
    ]  # fmt: skip
    assert dataclasses.asdict(dataclasses.replace(got, key="j")) == {"key": "j", "tags": {}, "hidden": 3}


@mutable
class _Plain:
    key: str
    size: int | None = None
    tags: dict[str, str] = records.field(default_factory=dict)


@dataclass
class _PlainTwin:
    key: str
    size: int | None = None
    tags: dict[str, str] = field(default_factory=dict)


def test_mutable_is_a_plain_dataclass() -> None:
    assert str(inspect.signature(_Plain)) == str(inspect.signature(_PlainTwin))
    got, want = _Plain("k", 2), _PlainTwin("k", 2)
    assert repr(got) == repr(want).replace("_PlainTwin", "_Plain") and got == _Plain("k", 2) and got != _Plain("k")
    got.size = 5  # assignable, as there
    assert got.size == 5 and dataclasses.asdict(got) == {"key": "k", "size": 5, "tags": {}}
    assert _Plain.__hash__ is None and _PlainTwin.__hash__ is None  # eq without frozen: unhashable
    params = _Plain.__dataclass_params__  # type: ignore[attr-defined]
    assert (params.init, params.repr, params.eq, params.frozen) == (True, True, True, False)
    assert _Plain("a").tags is not _Plain("b").tags


def test_dataclass_records_are_made_when_asked_for() -> None:
    @frozen
    class Late:
        """(documented: an undocumented record's docstring is its signature, made at once)"""

        a: int
        b: str = "x"

    assert isinstance(Late.__dict__["__init__"], records._LazyInit)  # compiled at the first instance
    assert not isinstance(Late.__dict__["__dataclass_fields__"], dict)  # made at the first question
    assert records.names(Late) == ("a", "b") == Late.__match_args__  # type: ignore[attr-defined]
    assert dataclasses.fields(Late(1))[1].default == "x"  # an instance first: the same fields
    assert dataclasses.is_dataclass(Late) and isinstance(Late.__dict__["__dataclass_fields__"], dict)
    assert not isinstance(Late.__dict__["__init__"], records._LazyInit)


def test_records_refuse_what_the_dataclass_refuses() -> None:
    class Shared:
        items: list[int] = []

    class Order:
        a: int = 0
        b: int

    class Unnamed:
        a = records.field(default=1)

    for cls, kind in ((Shared, ValueError), (Order, TypeError)):
        with pytest.raises(kind):
            frozen(cls)
        with pytest.raises(kind):
            dataclass(cls)
    with pytest.raises(TypeError, match="no type annotation"):
        frozen(Unnamed)

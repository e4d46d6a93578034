"""Records: dataclasses built without the dataclasses module, at a fraction
of the cost, for the rows, settings, requests and outcomes every command
makes (issues 12 and 17: a command's fixed cost).

``frozen`` is ``@dataclass(frozen=True)`` and ``mutable`` a plain
``@dataclass``; ``field`` is ``dataclasses.field`` for them (a default or
a default factory, ``repr``, ``compare``, ``hash``). A record behaves as the
dataclass would: the same ``__init__`` signature, equality, hashing,
``repr`` (none of its own with ``repr=False``, for a record holding a
secret), ``FrozenInstanceError`` on assignment, ``__match_args__``, and
``dataclasses.fields``, ``replace``, ``asdict`` and ``is_dataclass`` work
on it (compared in ``tests/unit/test_records.py``). What costs nothing at
import:

- the dataclasses module itself (with inspect, ast, dis and tokenize: ~43 M
  instructions, more than the whole ledger's modules) is not imported:
  ``__dataclass_fields__`` and ``__dataclass_params__`` are made by it the
  first time something asks for them (``dataclasses.fields`` and the rest,
  whose caller has imported it anyway);
- the generated ``__init__`` (one that fills the instance's ``__dict__``
  in one step, as ``pickle`` does: a frozen dataclass's sets each field
  through ``object.__setattr__``, ~0.45 us a field) is compiled at the
  class's first instance, not at import (~50 us a class; a command builds
  fewer than half of the classes it imports);
- ``__repr__``, ``__eq__``, ``__hash__``, ``__setattr__`` and
  ``__delattr__`` are shared functions over the fields, never compiled.

``quick_init`` gives a real frozen dataclass that cheaper ``__init__``.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform, overload

_Class = TypeVar("_Class", bound=type)
_T = TypeVar("_T")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # no default (not ``dataclasses.MISSING``: a record's own)


class _Factory:
    """The default of a field with a default factory, as the signature shows it."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


class Field:
    """A record's field: what ``field()`` says of it, then its name and type."""

    __slots__ = ("compare", "default", "default_factory", "hash", "name", "repr", "type")

    def __init__(self, default: Any, default_factory: Any, repr: bool, hash: bool | None, compare: bool) -> None:
        self.name = ""
        self.type: Any = None
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.hash = hash
        self.compare = compare


@overload
def field(*, default: _T, repr: bool = True, hash: bool | None = None, compare: bool = True) -> _T: ...


@overload
def field(
    *, default_factory: Callable[[], _T], repr: bool = True, hash: bool | None = None, compare: bool = True
) -> _T: ...


@overload
def field(*, repr: bool = True, hash: bool | None = None, compare: bool = True) -> Any: ...


def field(
    *,
    default: Any = MISSING,
    default_factory: Any = MISSING,
    repr: bool = True,
    hash: bool | None = None,
    compare: bool = True,
) -> Any:
    """``dataclasses.field`` for a record (no ``init=False``, no ``kw_only``)."""
    if default is not MISSING and default_factory is not MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return Field(default, default_factory, repr, hash, compare)


@overload
def frozen(cls: _Class, /) -> _Class: ...


@overload
def frozen(*, repr: bool = True) -> Callable[[_Class], _Class]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def frozen(cls: _Class | None = None, /, *, repr: bool = True) -> _Class | Callable[[_Class], _Class]:
    """``@dataclass(frozen=True)`` (``repr=False`` as there), cheaper to build."""

    def wrap(cls: _Class) -> _Class:
        _build(cls, with_repr=repr, is_frozen=True)
        return cls

    return wrap if cls is None else wrap(cls)


@dataclass_transform(field_specifiers=(field,))
def mutable(cls: _Class, /) -> _Class:
    """``@dataclass``, cheaper to build."""
    _build(cls, with_repr=True, is_frozen=False)
    return cls


def names(cls: type) -> tuple[str, ...]:
    """The field names of the record ``cls``, in order (what
    ``dataclasses.fields`` would give, without importing it)."""
    found: tuple[str, ...] = cls.__dict__["__record_names__"]
    return found


def _build(cls: type, *, with_repr: bool, is_frozen: bool) -> None:
    own = cls.__dict__
    if is_frozen and ("__setattr__" in own or "__delattr__" in own):
        raise TypeError(f"Cannot overwrite attribute __setattr__/__delattr__ in class {cls.__name__}")
    if "__post_init__" in own or "__slots__" in own:
        raise TypeError(f"records: {cls.__name__} has __post_init__ or __slots__")
    if any("__dataclass_fields__" in base.__dict__ for base in cls.__mro__[1:]):
        raise TypeError(f"records: {cls.__name__} inherits from a dataclass (not supported)")
    every = _fields(cls)
    record_names = tuple(f.name for f in every)
    cls.__record_names__ = record_names  # type: ignore[attr-defined]
    if "__match_args__" not in own:
        cls.__match_args__ = record_names  # type: ignore[attr-defined,misc]
    _Dataclass.install(cls, every, with_repr, is_frozen)
    for name, method in _methods(cls, every, with_repr, is_frozen).items():
        if method is not None:
            method.__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, method)
    cls.__init__ = _LazyInit(cls, every)  # type: ignore[misc]
    if not own.get("__doc__"):
        import inspect  # (as the dataclass does: the signature; no record of ours lacks a docstring)

        cls.__doc__ = cls.__name__ + str(inspect.signature(cls)).replace(" -> None", "")


def _fields(cls: type) -> list[Field]:
    """The fields of ``cls`` from its own annotations and class attributes,
    checked as the dataclass checks them; a ``field()`` in the class body
    is replaced by its default (or removed), as there."""
    own = cls.__dict__
    annotations: dict[str, Any] = own.get("__annotations__", {})
    for name, value in own.items():
        if isinstance(value, Field) and name not in annotations:
            raise TypeError(f"{name!r} is a field but has no type annotation")
    every: list[Field] = []
    for name, kind in annotations.items():
        if any(word in str(kind) for word in ("ClassVar", "InitVar", "KW_ONLY")):
            raise TypeError(f"records: {cls.__name__}.{name} is a ClassVar, InitVar or KW_ONLY (not supported)")
        value = own.get(name, MISSING)
        spec = _specified(cls, name, value)
        if spec is None:
            spec = Field(value, MISSING, True, None, True)  # a plain default, or none
        elif spec.default is MISSING:
            delattr(cls, name)
        else:
            setattr(cls, name, spec.default)
        spec.name, spec.type = name, kind
        if spec.default is not MISSING and type(spec.default).__hash__ is None:
            raise ValueError(
                f"mutable default {type(spec.default)} for field {name} is not allowed: use default_factory"
            )
        if every and _has_default(every[-1]) and not _has_default(spec):
            raise TypeError(f"non-default argument {name!r} follows default argument")
        every.append(spec)
    return every


def _specified(cls: type, name: str, value: Any) -> Field | None:
    """What a ``field()`` in the class body says (a record's, or one of
    ``dataclasses``, whose caller has imported it), None for anything else;
    refused where a record cannot do what it asks."""
    if isinstance(value, Field):
        return value
    if type(value).__name__ != "Field" or type(value).__module__ != "dataclasses":
        return None
    import dataclasses

    if not value.init or value.kw_only is True:
        raise TypeError(f"records: {cls.__name__}.{name} is keyword-only or not in __init__")
    default = MISSING if value.default is dataclasses.MISSING else value.default
    factory = MISSING if value.default_factory is dataclasses.MISSING else value.default_factory
    return Field(default, factory, value.repr, value.hash, value.compare)


def _has_default(f: Field) -> bool:
    return f.default is not MISSING or f.default_factory is not MISSING


def _methods(cls: type, every: list[Field], with_repr: bool, is_frozen: bool) -> dict[str, Any]:
    """The dataclass's methods that ``cls`` does not define itself (its own
    ``__hash__`` stays, as there), as shared functions over the fields."""
    own = cls.__dict__
    record_names = tuple(f.name for f in every)
    compared = tuple(f.name for f in every if f.compare)
    hashed = tuple(f.name for f in every if (f.compare if f.hash is None else f.hash))
    shown = tuple(f.name for f in every if f.repr)
    owner = cls

    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return tuple(getattr(self, n) for n in compared) == tuple(getattr(other, n) for n in compared)
        return NotImplemented

    def __hash__(self: Any) -> int:
        return hash(tuple(getattr(self, n) for n in hashed))

    @reprlib.recursive_repr()
    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in shown)
        return f"{self.__class__.__qualname__}({inner})"

    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is owner or name in record_names:
            raise _frozen_error(f"cannot assign to field {name!r}")
        super(owner, self).__setattr__(name, value)  # type: ignore[arg-type]  # (mypy: not a type)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is owner or name in record_names:
            raise _frozen_error(f"cannot delete field {name!r}")
        super(owner, self).__delattr__(name)  # type: ignore[arg-type]

    methods: dict[str, Any] = {"__setattr__": __setattr__, "__delattr__": __delattr__} if is_frozen else {}
    if with_repr and "__repr__" not in own:
        methods["__repr__"] = __repr__
    if "__eq__" not in own:
        methods["__eq__"] = __eq__
    explicit_hash = own.get("__hash__", MISSING)
    if explicit_hash is MISSING or (explicit_hash is None and "__eq__" in own):
        methods["__hash__"] = __hash__ if is_frozen else None  # (eq without frozen: unhashable, as there)
    return methods


def _frozen_error(message: str) -> Exception:
    from dataclasses import FrozenInstanceError

    return FrozenInstanceError(message)


class _LazyInit:
    """A record's ``__init__`` until it is first looked up (the first
    instance, or ``inspect.signature``): then compiled and put in its place."""

    def __init__(self, owner: type, every: list[Field]) -> None:
        self.owner = owner
        self.every = every

    def __get__(self, obj: object, kind: type | None = None) -> Any:
        init = _compiled_init(self.owner.__qualname__, self.every)
        self.owner.__init__ = init  # type: ignore[misc]
        return init if obj is None else init.__get__(obj, kind)


class _Dataclass:
    """``__dataclass_fields__`` and ``__dataclass_params__`` of a record,
    made by the dataclasses module the first time either is asked for
    (``fields``, ``replace``, ``asdict``, ``is_dataclass``): a twin class
    of the same fields goes through ``dataclasses.dataclass``, and both
    take the place of this descriptor."""

    def __init__(self, owner: type, every: list[Field], with_repr: bool, is_frozen: bool, attr: str) -> None:
        self.owner, self.every, self.with_repr, self.is_frozen, self.attr = owner, every, with_repr, is_frozen, attr

    @classmethod
    def install(cls, owner: type, every: list[Field], with_repr: bool, is_frozen: bool) -> None:
        for attr in ("__dataclass_fields__", "__dataclass_params__"):
            setattr(owner, attr, cls(owner, every, with_repr, is_frozen, attr))

    def __get__(self, obj: object, kind: type | None = None) -> Any:
        import dataclasses

        body: dict[str, Any] = {
            "__module__": self.owner.__module__,
            "__qualname__": self.owner.__qualname__,
            "__doc__": self.owner.__doc__ or "-",  # (no signature for the twin)
            "__annotations__": {f.name: f.type for f in self.every},
        }
        for f in self.every:
            given = {"default": f.default, "default_factory": f.default_factory}
            body[f.name] = dataclasses.field(
                **{k: v for k, v in given.items() if v is not MISSING}, repr=f.repr, hash=f.hash, compare=f.compare
            )
        twin: Any = dataclasses.dataclass(init=False, repr=False, eq=False)(type(self.owner.__name__, (), body))
        params = twin.__dataclass_params__
        params.init = params.eq = True  # what the dataclass itself records
        params.frozen, params.repr = self.is_frozen, self.with_repr
        self.owner.__dataclass_fields__ = twin.__dataclass_fields__  # type: ignore[attr-defined]
        self.owner.__dataclass_params__ = params  # type: ignore[attr-defined]
        return getattr(self.owner, self.attr)


def _compiled_init(qualname: str, every: list[Field]) -> Callable[..., None]:
    """An ``__init__`` with the dataclass's signature (defaults and default
    factories included) filling ``__dict__`` at once."""
    env: dict[str, Any] = {"_set": object.__setattr__, "_MISSING": _FACTORY}
    args, made, items = [], [], []
    for f in every:
        if f.default is not MISSING:
            env[f"_d_{f.name}"] = f.default
            args.append(f"{f.name}=_d_{f.name}")
        elif f.default_factory is not MISSING:
            env[f"_f_{f.name}"] = f.default_factory
            args.append(f"{f.name}=_MISSING")
            made.append(f"    if {f.name} is _MISSING:\n        {f.name} = _f_{f.name}()\n")
        else:
            args.append(f.name)
        items.append(f"{f.name!r}: {f.name}")
    source = (
        f"def __init__(self, {', '.join(args)}):\n"
        + "".join(made)
        + f"    _set(self, '__dict__', {{{', '.join(items)}}})\n"
    )
    exec(source, env)
    init: Callable[..., None] = env["__init__"]
    init.__qualname__ = f"{qualname}.__init__"
    init.__annotations__ = {**{f.name: f.type for f in every}, "return": None}  # the dataclass's signature
    return init


def quick_init(cls: _Class) -> _Class:
    """Give the frozen dataclass ``cls`` a cheaper ``__init__`` with the same
    signature (defaults and default factories included). Not for classes
    with ``__post_init__``, ``InitVar``, keyword-only or ``init=False``
    fields, or ``__slots__``: refused, so a later change cannot break it
    silently."""
    import dataclasses

    params = getattr(cls, "__dataclass_params__", None)
    if not dataclasses.is_dataclass(cls) or params is None or not params.frozen:
        raise TypeError(f"quick_init: {cls.__name__} is not a frozen dataclass")
    if hasattr(cls, "__post_init__") or "__slots__" in cls.__dict__:
        raise TypeError(f"quick_init: {cls.__name__} has __post_init__ or __slots__")
    every = []
    for f in dataclasses.fields(cls):
        if not f.init or f.kw_only:
            raise TypeError(f"quick_init: {cls.__name__}.{f.name} is keyword-only or not in __init__")
        spec = _specified(cls, f.name, f)
        assert spec is not None
        spec.name, spec.type = f.name, f.type
        every.append(spec)
    init = _compiled_init(cls.__qualname__, every)
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init  # type: ignore[method-assign]
    return cls

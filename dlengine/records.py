"""Frozen dataclasses made once per object on the hot path (an outcome, an
answer's metadata, a request), with an ``__init__`` that costs what a
plain class's does.

A frozen dataclass's generated ``__init__`` sets each field through
``object.__setattr__``: about 0.45 us a field, 5-6 us for an ``Outcome``,
paid several times per downloaded object. ``quick_init`` replaces it with
one that fills the instance's ``__dict__`` in one step (what ``pickle``
does too): the class stays a frozen dataclass (equality, hashing,
``replace``, ``FrozenInstanceError`` on assignment), only its
construction is cheaper.

``frozen`` is ``@dataclass(frozen=True)`` (with ``quick_init``'s
``__init__``) built at about a fifth of the cost. A frozen dataclass's
six methods are each generated as source text and compiled when its
module is imported, ~0.08 ms a method, ~0.5 ms a class: the ~30 classes a
small job's command imports paid ~10-15 ms before its first byte. Here
only ``__init__`` is compiled; ``__repr__``, ``__eq__``, ``__hash__``,
``__setattr__`` and ``__delattr__`` are shared functions over the fields,
doing what the generated ones do (compared in ``tests/unit/test_records.py``).
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Callable
from dataclasses import MISSING, FrozenInstanceError, fields, is_dataclass
from typing import Any, TypeVar, dataclass_transform, overload

_Class = TypeVar("_Class", bound=type)


def quick_init(cls: _Class) -> _Class:
    """Give the frozen dataclass ``cls`` a cheaper ``__init__`` with the same
    signature (defaults and default factories included). Not for classes
    with ``__post_init__``, ``InitVar``, keyword-only or ``init=False``
    fields, or ``__slots__``: refused, so a later change cannot break it
    silently."""
    params = getattr(cls, "__dataclass_params__", None)
    if not is_dataclass(cls) or params is None or not params.frozen:
        raise TypeError(f"quick_init: {cls.__name__} is not a frozen dataclass")
    _refuse_hooks(cls)
    init = _fast_init(cls)
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init  # type: ignore[method-assign]
    return cls


def _refuse_hooks(cls: type) -> None:
    if hasattr(cls, "__post_init__") or "__slots__" in cls.__dict__:
        raise TypeError(f"quick_init: {cls.__name__} has __post_init__ or __slots__")


def _fast_init(cls: type) -> Callable[..., None]:
    """The ``__init__`` of the dataclass ``cls`` filling ``__dict__`` at once."""
    env: dict[str, Any] = {"_set": object.__setattr__, "_MISSING": _FACTORY}
    args, made, items = [], [], []
    annotations: dict[str, Any] = {}
    for f in fields(cls):
        annotations[f.name] = f.type
        if not f.init or f.kw_only:
            raise TypeError(f"quick_init: {cls.__name__}.{f.name} is keyword-only or not in __init__")
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
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__annotations__ = {**annotations, "return": None}  # the signature the dataclass's has
    return init


class _Factory:
    """The default of a field with a default factory, as the signature shows it."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


@overload
def frozen(cls: _Class, /) -> _Class: ...


@overload
def frozen(*, repr: bool = True) -> Callable[[_Class], _Class]: ...


@dataclass_transform(frozen_default=True)
def frozen(cls: _Class | None = None, /, *, repr: bool = True) -> _Class | Callable[[_Class], _Class]:
    """``@dataclass(frozen=True)`` (``repr=False`` as there), cheaper to
    build; the same refusals as ``quick_init``."""

    def wrap(cls: _Class) -> _Class:
        _frozen(cls, repr)
        return cls

    return wrap if cls is None else wrap(cls)


def _frozen(cls: type, with_repr: bool) -> None:
    own = cls.__dict__
    if "__setattr__" in own or "__delattr__" in own:
        raise TypeError(f"Cannot overwrite attribute __setattr__/__delattr__ in class {cls.__name__}")
    _refuse_hooks(cls)
    documented = bool(own.get("__doc__"))
    if not documented:
        cls.__doc__ = "(made below)"  # not once more from a signature that is not yet the class's
    # the fields, __match_args__ and the dataclass's records, but no generated method
    dataclasses.dataclass(init=False, repr=False, eq=False)(cls)
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    params.init = params.eq = params.frozen = True  # what @dataclass(frozen=True) records
    params.repr = with_repr
    every = fields(cls)
    names = tuple(f.name for f in every)
    compared = tuple(f.name for f in every if f.compare)
    hashed = tuple(f.name for f in every if (f.compare if f.hash is None else f.hash))
    shown = tuple(f.name for f in every if f.repr)
    owner: type = cls

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
        if type(self) is owner or name in names:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        super(owner, self).__setattr__(name, value)  # type: ignore[arg-type]  # (mypy: not a type)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is owner or name in names:
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        super(owner, self).__delattr__(name)  # type: ignore[arg-type]

    methods: dict[str, Callable[..., Any]] = {"__setattr__": __setattr__, "__delattr__": __delattr__}
    if with_repr:
        methods["__repr__"] = __repr__
    methods["__eq__"] = __eq__
    explicit_hash = own.get("__hash__", MISSING)
    if explicit_hash is MISSING or (explicit_hash is None and "__eq__" in own):
        methods["__hash__"] = __hash__  # (a class's own __hash__ stays, as there)
    for name, method in methods.items():
        if name in own and name != "__hash__":
            continue  # the class's own (as the dataclass leaves it)
        method.__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, method)
    cls.__init__ = _fast_init(cls)  # type: ignore[misc]
    if not documented:
        import inspect

        cls.__doc__ = cls.__name__ + str(inspect.signature(cls)).replace(" -> None", "")

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
"""

from __future__ import annotations

from dataclasses import MISSING, fields, is_dataclass
from typing import Any, TypeVar

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
    if hasattr(cls, "__post_init__") or "__slots__" in cls.__dict__:
        raise TypeError(f"quick_init: {cls.__name__} has __post_init__ or __slots__")
    env: dict[str, Any] = {"_set": object.__setattr__, "_MISSING": MISSING}
    args, made, items = [], [], []
    for f in fields(cls):
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
    init = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init  # type: ignore[method-assign]
    return cls

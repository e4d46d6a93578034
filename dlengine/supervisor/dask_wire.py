"""A Dask batch and its result as they cross the cluster: one ``bytes``
of columns instead of a list of pickled dataclasses.

Dask pickles a task's arguments in the supervisor, the scheduler unpickles
them (``update_graph``) and pickles them again for the worker
(``compute-task``), the worker unpickles them; a result goes back the same
way. A list of 512 frozen dataclasses costs each of those steps a dict per
object, and unpickling an ``ObjectState`` is an Enum call per object: in a
no-I/O run that was about a quarter of the supervisor's CPU and most of
the scheduler's (``docs/scale-out.md``). A ``bytes`` costs them a copy.

The columns: every field of the rows in order, a field whose value is the
same in every row (a batch is one job's: its bucket, timeout, limits;
most outcomes' state and mountpath) sent once. Enums go as their values,
a task's ``StoredInfo`` as a tuple. The field names travel too: a worker
with another dlengine (other fields) fails the batch with a clear error
instead of building wrong rows.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import fields
from itertools import repeat
from operator import attrgetter
from typing import Any

from dlengine.errors import ErrorCode
from dlengine.ledger.models import Outcome, StoredInfo, Task, build_rows
from dlengine.ledger.states import ObjectState

__all__ = ["WireError", "pack_outcomes", "pack_tasks", "unpack_outcomes", "unpack_tasks"]

_TASK_FIELDS = tuple(f.name for f in fields(Task))
_OUTCOME_FIELDS = tuple(f.name for f in fields(Outcome))
_STORED_FIELDS = tuple(f.name for f in fields(StoredInfo))
_STATES = {s.value: s for s in ObjectState}
_CODES: dict[str | None, ErrorCode | None] = {None: None, **{c.value: c for c in ErrorCode}}

_Convert = Callable[[Any], Any]
_Column = tuple[bool, Any]  # (one value per row, the values) or (same in every row, the value)


class WireError(ValueError):
    """A batch or result this dlengine cannot read (another version's fields)."""


def _stored_out(info: StoredInfo | None) -> tuple[Any, ...] | None:
    return None if info is None else tuple(getattr(info, name) for name in _STORED_FIELDS)


def _stored_in(values: tuple[Any, ...] | None) -> StoredInfo | None:
    return None if values is None else StoredInfo(*values)


def _value(member: Any) -> Any:
    return None if member is None else member.value


_TASK_OUT: dict[str, _Convert] = {"stored": _stored_out}
_TASK_IN: dict[str, _Convert] = {"stored": _stored_in}
_OUTCOME_OUT: dict[str, _Convert] = {"state": _value, "code": _value}
_OUTCOME_IN: dict[str, _Convert] = {"state": _STATES.__getitem__, "code": _CODES.__getitem__}


def _pack(rows: Sequence[Any], names: tuple[str, ...], convert: dict[str, _Convert]) -> bytes:
    # rows as tuples in C (attrgetter), then columns (zip); a column whose
    # values all equal its first goes once (== in C: a float field's 1 and
    # 1.0 are the same value)
    columns: list[_Column] = []
    if rows:
        for name, values in zip(names, zip(*map(attrgetter(*names), rows), strict=True), strict=True):
            if name in convert:
                values = tuple(map(convert[name], values))
            same = values.count(values[0]) == len(values)
            columns.append((False, values[0]) if same else (True, values))
    return pickle.dumps((names, len(rows), columns), protocol=pickle.HIGHEST_PROTOCOL)


def _unpack(payload: bytes, names: tuple[str, ...], convert: dict[str, _Convert]) -> Iterator[tuple[Any, ...]]:
    """The rows' field values, row by row."""
    sent, count, columns = pickle.loads(payload)
    if tuple(sent) != names:
        raise WireError(f"fields {list(sent)} where this dlengine has {list(names)}: the same version everywhere")
    if not count:
        return iter(())
    lists: list[Iterable[Any]] = []
    for name, (each, data) in zip(names, columns, strict=True):
        fix = convert.get(name)
        if each:
            lists.append(data if fix is None else list(map(fix, data)))
        else:
            lists.append(repeat(data if fix is None else fix(data), count))
    return zip(*lists, strict=True)


def pack_tasks(tasks: Sequence[Task]) -> bytes:
    return _pack(tasks, _TASK_FIELDS, _TASK_OUT)


def unpack_tasks(payload: bytes) -> list[Task]:
    return build_rows(Task, _unpack(payload, _TASK_FIELDS, _TASK_IN))


def pack_outcomes(outcomes: Sequence[Outcome]) -> bytes:
    return _pack(outcomes, _OUTCOME_FIELDS, _OUTCOME_OUT)


def unpack_outcomes(payload: bytes) -> list[Outcome]:
    return build_rows(Outcome, _unpack(payload, _OUTCOME_FIELDS, _OUTCOME_IN))

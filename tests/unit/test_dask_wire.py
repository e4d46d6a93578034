"""Batches and results as bytes across the cluster (dlengine/supervisor/dask_wire.py): every field
comes back as it went, whatever varies between rows."""

from __future__ import annotations

import pickle

import pytest

from dlengine.errors import ErrorCode
from dlengine.ledger.models import Outcome, StoredInfo, Task
from dlengine.ledger.states import ObjectState
from dlengine.supervisor import dask_wire


def _task(i: int, **changes: object) -> Task:
    fields: dict[str, object] = dict(
        id=i, job_id="j1", job_seq=3, name=f"a/obj-{i}", link=f"http://127.0.0.1:9/obj-{i}", mountpath_id=1,
        attempts=1, provider="s3", namespace="", bucket="bkt", timeout=30.0, bytes_per_hour=0,
    )  # fmt: skip
    fields.update(changes)
    return Task(**fields)  # type: ignore[arg-type]


def test_tasks_come_back_equal_with_what_varies_between_rows() -> None:
    stored = StoredInfo(5, '"e"', "v1", "md5:00", "Mon", "http://127.0.0.1:9/obj-1", 12.5)
    tasks = [
        _task(1, stored=stored, attempts=2, size=5, etag='"e"'),
        _task(2, mountpath_id=2, timeout=1.5, checksum="md5:ff", connections=4),
        _task(3),
    ]
    back = dask_wire.unpack_tasks(dask_wire.pack_tasks(tasks))
    assert back == tasks and [type(t) for t in back] == [Task] * 3
    assert back[0].stored == stored and isinstance(back[0].stored, StoredInfo) and back[1].stored is None
    assert hash(back[2]) == hash(tasks[2])  # still a frozen dataclass
    with pytest.raises(AttributeError):
        back[0].name = "x"  # type: ignore[misc]


def test_outcomes_come_back_with_their_enums() -> None:
    outcomes = [
        Outcome(1, ObjectState.DONE, size=10, etag='"a"', checksum="md5:aa", mountpath="s3://bkt"),
        Outcome(2, ObjectState.PENDING, error="503", code=ErrorCode.NOT_FOUND, next_try=99.5, release=True),
        Outcome(3, ObjectState.FAILED, error="gone", code=ErrorCode.NOT_FOUND, fatal=True),
    ]
    back = dask_wire.unpack_outcomes(dask_wire.pack_outcomes(outcomes))
    assert back == outcomes
    assert back[1].state is ObjectState.PENDING and back[2].code is ErrorCode.NOT_FOUND and back[0].code is None


@pytest.mark.parametrize("count", [0, 1, 600])
def test_any_number_of_rows(count: int) -> None:
    tasks = [_task(i) for i in range(count)]
    assert dask_wire.unpack_tasks(dask_wire.pack_tasks(tasks)) == tasks


def test_same_values_go_once() -> None:
    """A batch is one job's: its bucket, timeout and limits are sent once, not per row."""
    one = len(dask_wire.pack_tasks([_task(1)]))
    many = len(dask_wire.pack_tasks([_task(i) for i in range(500)]))
    per_row = (many - one) / 499
    assert per_row < len(_task(1).name) + len(_task(1).link) + 16  # names, links, ids; nothing else


def test_another_dlengines_fields_are_a_clear_error() -> None:
    names, count, columns = pickle.loads(dask_wire.pack_tasks([_task(1)]))
    other = pickle.dumps((names[:-1], count, columns[:-1]))
    with pytest.raises(dask_wire.WireError, match="the same version everywhere"):
        dask_wire.unpack_tasks(other)

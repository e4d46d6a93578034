"""Batch functions that answer "done" without any request: the no-I/O runs
of ``bench/dask_bench.py`` (what the supervisor and the scheduler cost per
object). A module the workers import (``PYTHONPATH`` is the repository), so
Dask sends the function by reference, as it does ``run_packed``; a function
of the supervisor's ``__main__`` went by value, its code pickled with every
batch.
"""

from __future__ import annotations

from typing import Any

from dlengine.ledger.models import Outcome, Task
from dlengine.ledger.states import ObjectState


def _done(tasks: list[Task]) -> list[Outcome]:
    return [Outcome(t.id, ObjectState.DONE, size=0, mountpath="s3://" + t.bucket) for t in tasks]


def noio_packed(payload: bytes, ctx: Any, options: Any = None) -> bytes:
    """In place of ``dask_executor.run_packed``."""
    from dlengine.supervisor import dask_wire

    return dask_wire.pack_outcomes(_done(dask_wire.unpack_tasks(payload)))


def noio_batch(tasks: list[Task], ctx: Any, options: Any = None) -> list[Outcome]:
    """In place of ``dask_executor.run_batch`` (a dlengine without ``run_packed``)."""
    return _done(tasks)

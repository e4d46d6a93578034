"""How the Dask executor sizes its batches and when it gives up on a quiet one (the cluster end to end:
tests/e2e/test_dask.py)."""

from __future__ import annotations

import pytest


def test_batches_are_large_but_spread_over_the_cluster() -> None:
    from dlengine.supervisor.dask_executor import batch_size, full_batch

    assert full_batch(16) == 512 and full_batch(4) == 512 and full_batch(48) == 528
    assert batch_size(2048, threads=16, slots=2) == 512  # plenty: full batches
    assert batch_size(40, threads=4, slots=2) == 20  # few: one batch per Dask thread
    assert batch_size(3, threads=16, slots=8) == 16  # never below one round of threads


def test_idle_limit_follows_the_timeout_and_uploads_not_the_batch_size() -> None:
    from dlengine.supervisor.dask_executor import idle_limit, profiler_deadlocks

    assert idle_limit(10.0, None) == 2.0 + 3 * 10.0  # not started: a few timeouts
    assert idle_limit(10.0, [7, 0.0]) == idle_limit(10.0, 1) == idle_limit(10.0, None)  # 1: just started
    assert idle_limit(10.0, [7, 100.0]) == 2.0 + 3 * 10.0 + 100.0  # an upload of 100 MiB at 1 MiB/s
    assert idle_limit(60.0, None) == 182.0  # the default timeout, whatever the batch's size
    assert profiler_deadlocks((3, 11, 7)) and not profiler_deadlocks((3, 11, 9)) and not profiler_deadlocks((3, 13, 0))


class _Client:
    def __init__(self) -> None:
        self.sent: list[tuple[list[str], object]] = []

    def set_metadata(self, keys: list[str], value: object) -> None:
        self.sent.append((keys, value))


class _Worker:
    """What a Pulse asks of its Dask worker: the task's key, the client."""

    def __init__(self) -> None:
        self.client = _Client()

    def get_current_task(self) -> str:
        return "dlengine-t-key"


def test_a_pulse_publishes_changes_at_most_once_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    from dlengine.supervisor import dask_executor

    now = [100.0]
    monkeypatch.setattr(dask_executor.time, "monotonic", lambda: now[0])
    worker = _Worker()
    pulse = dask_executor.Pulse(worker)
    pulse.publish()  # the first mark: the batch runs
    pulse.beat()
    pulse.publish()  # changed, but within the second: not sent
    now[0] += 1.0
    pulse.publish()  # sent
    now[0] += 1.0
    pulse.publish()  # nothing moved: not sent
    pulse.carrying(7, 100 << 20)  # a 100 MiB upload begins: sign of life, and an allowance
    pulse.publish()
    sent = [value for keys, value in worker.client.sent]
    assert all(keys == [dask_executor.STARTED, "dlengine-t-key"] for keys, _ in worker.client.sent)
    assert sent == [[0, 0.0], [1, 0.0], [2, 100.0]]
    assert dask_executor.idle_limit(10.0, sent[-1]) == 2.0 + 30.0 + 100.0

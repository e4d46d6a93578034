"""How the Dask executor sizes its batches and when it gives up on a quiet one (the cluster end to end:
tests/e2e/test_dask.py)."""

from __future__ import annotations


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

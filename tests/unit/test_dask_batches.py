"""How the Dask executor sizes its batches (the cluster end to end:
tests/e2e/test_dask.py)."""

from __future__ import annotations


def test_batches_are_large_but_spread_over_the_cluster() -> None:
    from dlengine.supervisor.dask_executor import batch_size, full_batch

    assert full_batch(16) == 512 and full_batch(4) == 512 and full_batch(48) == 528
    assert batch_size(2048, threads=16, slots=2) == 512  # plenty: full batches
    assert batch_size(40, threads=4, slots=2) == 20  # few: one batch per Dask thread
    assert batch_size(3, threads=16, slots=8) == 16  # never below one round of threads

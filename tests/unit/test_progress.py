"""The progress bar in process: bytes in flight, not only objects."""

from __future__ import annotations

import io

from dlengine.progress import Follower


def test_progress_bar_counts_bytes_in_flight() -> None:
    stream = io.StringIO()
    follower = Follower(stream=stream, bar=True, interval=0.1)
    base = {"id": "dnl-x", "state": "running", "total": 10, "finished_cnt": 2, "error_cnt": 1, "running_cnt": 3}
    follower({**base, "bytes_done": 5 << 20, "bytes_total": 50 << 20})
    follower({**base, "bytes_done": 20 << 20, "bytes_total": 50 << 20})
    follower.close()
    text = stream.getvalue()
    assert "20.0M/50.0M" in text  # bytes, not objects
    assert "2/10 obj, 3 running, 1 failed" in text


def test_an_aborted_jobs_objects_are_counted_as_aborted_not_failed() -> None:
    """A job stopped by a fatal error (a full disk): the line says how many
    failed and how many never ran, as the summary does."""
    from dlengine.progress import describe

    status = {
        "id": "dnl-x", "state": "aborted", "total": 8, "finished_cnt": 3, "skipped_cnt": 0, "error_cnt": 1,
        "aborted_cnt": 4, "running_cnt": 0, "bytes_done": 900 << 10, "bytes_total": 900 << 10,
    }  # fmt: skip
    assert describe(status) == "dnl-x aborted: 3/8 objects, 1 failed, 4 aborted, 900.0 KiB of 900.0 KiB"  # type: ignore[arg-type]
    stream = io.StringIO()
    follower = Follower(stream=stream, bar=True, interval=0.1)
    follower(status)  # type: ignore[arg-type]
    follower.close()
    assert "3/8 obj, 1 failed, 4 aborted" in stream.getvalue()

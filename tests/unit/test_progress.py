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

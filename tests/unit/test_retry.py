"""When a failed attempt is tried again (``work.retry_delay``): the
backoff with jitter, except after a timeout, whose wait is at most the
job's timeout (the attempt waited that long already; AIStore retries a
timeout at once). A refused connection is not retried on either HTTP
path (libcurl, urllib3)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from dlengine import errors
from dlengine.ledger.models import Task
from dlengine.sources import registry
from dlengine.supervisor import work


def _task(attempts: int, timeout: float) -> Task:
    return Task(
        id=1, job_id="dnl-retry", job_seq=1, name="o", link="http://127.0.0.1:9/o", mountpath_id=1,
        attempts=attempts, provider="ais", namespace="", bucket="b", timeout=timeout, bytes_per_hour=0,
    )  # fmt: skip


def _ctx(tmp_path: Path, timeout: float = 60.0) -> work.Context:
    return work.Context(workdir=tmp_path, headers={}, timeout=timeout)


@pytest.mark.parametrize("attempts", range(1, 10))
def test_a_timeout_waits_at_most_the_job_timeout(tmp_path: Path, attempts: int) -> None:
    delay = work.retry_delay(_task(attempts, 0.001), errors.SourceTimeoutError("t"), _ctx(tmp_path))
    assert 0 <= delay <= 0.001


def test_a_timeout_of_the_default_waits_at_most_the_default(tmp_path: Path) -> None:
    # a job without a timeout of its own ("" or "0s"): the configured one
    delay = work.retry_delay(_task(6, 0.0), errors.SourceTimeoutError("t"), _ctx(tmp_path, timeout=0.5))
    assert delay <= 0.5


@pytest.mark.parametrize(
    "exc",
    [errors.SourceTimeoutError("t"), errors.SourceConnectionError("c"), errors.ServerBusyError("503")],
    ids=["timeout-of-a-long-timeout", "connection", "busy"],
)
def test_other_retries_back_off_exponentially(tmp_path: Path, exc: errors.TransientError) -> None:
    # the 4th attempt failed: 8 s with a jitter of +-50%
    delays = [work.retry_delay(_task(4, 60.0), exc, _ctx(tmp_path)) for _ in range(50)]
    assert all(4.0 <= d <= 12.0 for d in delays), delays


def test_the_outcome_of_a_short_timeout_is_due_at_once(tmp_path: Path) -> None:
    outcome = work.failure(_task(4, 0.001), errors.SourceTimeoutError("t"), _ctx(tmp_path))
    assert outcome.state.value == "pending" and outcome.code is errors.ErrorCode.TIMEOUT
    assert outcome.next_try - time.time() <= 0.01


def test_a_refused_connection_fails_at_once_on_the_urllib3_path_too(tmp_path: Path) -> None:
    """Throttled jobs take the urllib3 path (download threads): the same
    permanent error as the libcurl loop's, not five retries over 15 s."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    source, key = registry.resolve(f"http://127.0.0.1:{port}/x")
    with pytest.raises(errors.SourceRefusedError) as info:
        source.stat(key, {}, 5.0)
    outcome = work.failure(_task(1, 5.0), info.value, _ctx(tmp_path))
    assert outcome.state.value == "failed" and outcome.code is errors.ErrorCode.REFUSED

"""When to try a failed attempt again: exponential backoff with jitter."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from dlengine.errors import SupervisorError

T = TypeVar("T")
log = logging.getLogger("dlengine.supervisor")

BASE_DELAY = 1.0
MAX_DELAY = 300.0


def backoff(attempt: int, retry_after: float | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1``; honours Retry-After
    when the server asked for longer."""
    delay: float = min(MAX_DELAY, BASE_DELAY * 2.0 ** max(0, attempt - 1))
    import random  # (at the first retry: ~2 ms of every command's and worker's start otherwise)

    delay *= random.uniform(0.5, 1.5)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_DELAY * 4))
    return delay


THREAD_ATTEMPTS = 4  # a supervisor thread's step, failing in a row, before it gives up


class StepFailures:
    """Failures in a row of one supervisor thread's step (a dispatcher
    round, a supervisor tick): each is retried after a short backoff; the
    last one ends the supervisor with the reason instead of leaving it
    alive but doing nothing (issue 13: "database or disk is full")."""

    def __init__(self, what: str, attempts: int = THREAD_ATTEMPTS) -> None:
        self.what = what
        self.attempts = attempts
        self.count = 0

    def succeeded(self) -> None:
        self.count = 0

    def failed(self, exc: BaseException) -> float:
        """Seconds to wait before the next try; raises SupervisorError
        (naming the step and the reason) after the last attempt."""
        self.count += 1
        if self.count >= self.attempts:
            raise SupervisorError(f"{self.what} failed {self.count} times in a row: {exc}") from exc
        return min(5.0, 0.5 * 2.0 ** (self.count - 1))

    def attempt(self, step: Callable[[], T], stop: threading.Event) -> T | None:
        """Run one step: its result, or None after a failure, once the
        backoff has passed (or ``stop`` was set); the last failure in a row
        raises SupervisorError."""
        try:
            result = step()
        except Exception as exc:  # noqa: BLE001 - retried, then the supervisor stops
            delay = self.failed(exc)
            log.warning("%s failed, will retry in %.1f s: %s", self.what, delay, exc)
            stop.wait(delay)
            return None
        self.succeeded()
        return result

"""When to try a failed attempt again: exponential backoff with jitter."""

from __future__ import annotations

import random

BASE_DELAY = 1.0
MAX_DELAY = 300.0


def backoff(attempt: int, retry_after: float | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1``; honours Retry-After
    when the server asked for longer."""
    delay: float = min(MAX_DELAY, BASE_DELAY * 2.0 ** max(0, attempt - 1))
    delay *= random.uniform(0.5, 1.5)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_DELAY * 4))
    return delay

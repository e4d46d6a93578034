"""How many workers a mountpath's pool needs for the work queued on it, so
that a small job does not pay for workers it cannot use (issue 17: ``submit``
of one object forked two spares, and the pool took both).

A queued row (pending, or running: after a restart it is pending again)
whose size is unknown (a link nobody asked yet) or at least ``small`` bytes
counts as a worker of its own: a claim shares a job's last rows among the
workers (``claims.claim``'s ``sharers``), so a few large files go one to a
worker, each to its own loop and core, as they did before pools were sized
(bench/RESULTS.md: four 256 MiB links over two workers, 2.00 -> 1.38 s).
Rows known to be smaller count ``batch`` to a worker: what one worker's
loop downloads at once. No count (``None``: rows still to be dispatched,
whose number and mountpaths the ledger does not know yet, or more rows than
counting is worth) means every pool as large as it may be.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dlengine.config import Settings

# rows worth counting at most: beyond that many, pools are full anyway (a
# bound on the read before the fork and on each tick's while one is not)
MAX_COUNTED = 4096

Queued = Sequence["tuple[int, int | None]"]  # (mountpath id, size or None) of each queued row


def limit(settings: Settings, mountpaths: int) -> int:
    """How many queued rows to read: one more than would make every pool
    (``mountpaths`` of them) full."""
    return min(settings.workers_for_each_mountpath() * settings.threads_per_worker * mountpaths, MAX_COUNTED) + 1


def wanted(settings: Settings, queued: Queued | None, mountpaths: int) -> dict[int, int] | None:
    """Workers each mountpath (by id) needs, at most its pool's size; a
    mountpath with nothing queued is absent. None: every pool full (no
    count, or ``limit`` rows or more queued)."""
    if queued is None or len(queued) >= limit(settings, mountpaths):
        return None
    most = settings.workers_for_each_mountpath()
    large: Counter[int] = Counter()
    small: Counter[int] = Counter()
    for mountpath, size in queued:
        if size is None or size >= settings.chunk_size:
            large[mountpath] += 1
        else:
            small[mountpath] += 1
    batch = settings.threads_per_worker
    return {m: min(most, large[m] + -(-small[m] // batch)) for m in large | small}


def spares(settings: Settings, queued: Queued | None) -> int:
    """Workers to fork before the supervisor starts: what the pools of
    the configured mountpaths would start with."""
    mountpaths = len(settings.mountpaths)
    counts = wanted(settings, queued, mountpaths)
    full = settings.workers_for_each_mountpath() * mountpaths
    return full if counts is None else min(full, sum(counts.values()))

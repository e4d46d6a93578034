"""The bandwidth token buckets in the ledger (table ``throttle``): the one
statement that refills and takes; ``dlengine.throttle`` paces the reads."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from dlengine.ledger import db

__all__ = ["TokenBuckets"]

# One statement refills by the time elapsed since the last take (never more
# than the burst), takes the amount and returns the balance. A clock that
# went backwards refills nothing instead of taking tokens away.
_TAKE_SQL = """
INSERT INTO throttle (job, tokens, updated) VALUES (:job, -:amount, :now)
ON CONFLICT (job) DO UPDATE SET
    tokens = min(:burst, tokens + max(0.0, :now - updated) * :rate) - :amount,
    updated = :now
RETURNING tokens
"""


class TokenBuckets:
    """The buckets, through one connection of this process shared by its
    download threads (the worker's main connection is its main thread's)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def take(self, job: int, amount: float, rate: float, burst: float) -> float:
        """Take ``amount`` tokens from the job's bucket; returns how many
        seconds from now the refill will have paid for them."""
        with self._lock:
            conn = self._connect()
            try:
                with db.write(conn):
                    now = time.time()  # read under the lock: takes stay in order
                    params = {"job": job, "amount": amount, "now": now, "burst": burst, "rate": rate}
                    tokens = float(conn.execute(_TAKE_SQL, params).fetchone()[0])
            except sqlite3.IntegrityError:
                return 0.0  # the job was removed meanwhile: nothing left to limit
        return max(0.0, -tokens / rate)

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = db.connect(self._path)
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

-- Bandwidth limits (limits.bytes_per_hour): one token bucket per limited
-- job, shared by every worker process that serves it (dlengine/throttle.py).
-- tokens may go negative: a taker reserves what it needs and sleeps until
-- the refill has paid the debt, so the debt is the queue of waiting takers.
CREATE TABLE throttle (
    job     INTEGER PRIMARY KEY REFERENCES jobs (seq) ON DELETE CASCADE,
    tokens  REAL NOT NULL,                   -- bytes; negative = reserved ahead
    updated REAL NOT NULL                    -- time.time() of the last refill
);

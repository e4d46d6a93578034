-- objects.deaths: how many times a worker process died while it held the
-- row (a segfault in a library, the OOM killer, a kill -9 of that worker),
-- counted by the supervisor that saw it die (claims.recover_dead). A row
-- with deaths is claimed alone, by a worker holding nothing else, and
-- fails (code "worker") once its worker has died with it alone and its
-- deaths reach DLENGINE_ATTEMPTS. Rows given back by a worker that stops,
-- by a new supervisor after its predecessor died (kill -9 of the whole
-- group), or for an expired lease do not count.
ALTER TABLE objects ADD COLUMN deaths INTEGER NOT NULL DEFAULT 0;
-- jobs.deaths: the sum of its rows' deaths, so a claim looks for rows to
-- take alone only in jobs that have some (no extra statement otherwise).
ALTER TABLE jobs ADD COLUMN deaths INTEGER NOT NULL DEFAULT 0;
-- Claims take rows without deaths (deaths = 0) and an idle worker one with
-- deaths (> 0), each from this index alone.
DROP INDEX objects_todo;
CREATE INDEX objects_todo ON objects (job, mountpath, deaths, next_try) WHERE state = 'pending';

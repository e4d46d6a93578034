-- dlengine ledger, schema 1.
-- Counters on jobs are kept equal to the object rows by triggers, so every
-- state change is one statement and status never has to count rows.

CREATE TABLE mountpaths (
    id   INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE
);

CREATE TABLE buckets (
    provider  TEXT NOT NULL,
    namespace TEXT NOT NULL DEFAULT '',
    name      TEXT NOT NULL,
    created   REAL NOT NULL,
    PRIMARY KEY (provider, namespace, name)
);

CREATE TABLE jobs (
    seq            INTEGER PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    type           TEXT NOT NULL,
    description    TEXT NOT NULL,
    provider       TEXT NOT NULL,
    namespace      TEXT NOT NULL DEFAULT '',
    bucket         TEXT NOT NULL,
    spec           TEXT NOT NULL,            -- canonical JSON, never secrets
    state          TEXT NOT NULL DEFAULT 'pending',
    error          TEXT,                     -- why the job stopped, if it did
    conns          INTEGER NOT NULL DEFAULT 0,
    bytes_per_hour INTEGER NOT NULL DEFAULT 0,
    timeout        REAL NOT NULL DEFAULT 0,
    created_time   REAL NOT NULL,
    started_time   REAL,
    finished_time  REAL,
    all_dispatched INTEGER NOT NULL DEFAULT 0,
    total          INTEGER NOT NULL DEFAULT 0,
    pending_cnt    INTEGER NOT NULL DEFAULT 0,
    running_cnt    INTEGER NOT NULL DEFAULT 0,
    done_cnt       INTEGER NOT NULL DEFAULT 0,
    skipped_cnt    INTEGER NOT NULL DEFAULT 0,
    failed_cnt     INTEGER NOT NULL DEFAULT 0,
    aborted_cnt    INTEGER NOT NULL DEFAULT 0,
    bytes_done     INTEGER NOT NULL DEFAULT 0,
    bytes_total    INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE objects (
    id            INTEGER PRIMARY KEY,       -- also names the work file
    job           INTEGER NOT NULL REFERENCES jobs (seq) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    link          TEXT NOT NULL,
    mountpath     INTEGER NOT NULL,
    state         TEXT NOT NULL DEFAULT 'pending',
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_try      REAL NOT NULL DEFAULT 0,
    size          INTEGER,
    bytes_done    INTEGER NOT NULL DEFAULT 0,
    etag          TEXT,
    version       TEXT,
    checksum      TEXT,                      -- "algo:value" that was verified
    last_modified TEXT,
    error         TEXT,
    owner         TEXT,
    lease_expiry  REAL,
    start_time    REAL,
    end_time      REAL,
    UNIQUE (job, name)
);

-- Claims scan only pending rows of one job and mountpath.
CREATE INDEX objects_todo ON objects (job, mountpath, next_try) WHERE state = 'pending';
CREATE INDEX objects_running ON objects (job) WHERE state = 'running';
CREATE INDEX objects_failed ON objects (job) WHERE state = 'failed';
CREATE INDEX objects_finished ON objects (job, end_time) WHERE state IN ('done', 'skipped');

-- What is stored in each bucket: drives ls, skip and sync.
CREATE TABLE catalog (
    provider      TEXT NOT NULL,
    namespace     TEXT NOT NULL DEFAULT '',
    bucket        TEXT NOT NULL,
    name          TEXT NOT NULL,
    size          INTEGER NOT NULL,
    mountpath     TEXT NOT NULL,
    source        TEXT NOT NULL,
    etag          TEXT,
    version       TEXT,
    checksum      TEXT,
    last_modified TEXT,
    stored_time   REAL NOT NULL,
    job_id        TEXT,
    PRIMARY KEY (provider, namespace, bucket, name)
) WITHOUT ROWID;

CREATE TRIGGER objects_counts AFTER UPDATE OF state ON objects
WHEN OLD.state IS NOT NEW.state
BEGIN
    UPDATE jobs SET
        pending_cnt = pending_cnt + (NEW.state = 'pending') - (OLD.state = 'pending'),
        running_cnt = running_cnt + (NEW.state = 'running') - (OLD.state = 'running'),
        done_cnt    = done_cnt    + (NEW.state = 'done')    - (OLD.state = 'done'),
        skipped_cnt = skipped_cnt + (NEW.state = 'skipped') - (OLD.state = 'skipped'),
        failed_cnt  = failed_cnt  + (NEW.state = 'failed')  - (OLD.state = 'failed'),
        aborted_cnt = aborted_cnt + (NEW.state = 'aborted') - (OLD.state = 'aborted'),
        bytes_done  = bytes_done
            + (CASE WHEN NEW.state IN ('done', 'skipped') THEN coalesce(NEW.size, 0) ELSE 0 END)
            - (CASE WHEN OLD.state IN ('done', 'skipped') THEN coalesce(OLD.size, 0) ELSE 0 END)
    WHERE seq = NEW.job;
END;

CREATE TRIGGER objects_sizes AFTER UPDATE OF size ON objects
WHEN OLD.size IS NOT NEW.size
BEGIN
    UPDATE jobs SET bytes_total = bytes_total + coalesce(NEW.size, 0) - coalesce(OLD.size, 0)
    WHERE seq = NEW.job;
END;

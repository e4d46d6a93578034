-- A listing named by the version of its whole source (a Hub revision's
-- commit): which jobs' rows hold it. A re-run that finds the source at the
-- same version takes the objects from those rows instead of listing again.
CREATE TABLE listings (
    key      TEXT PRIMARY KEY,   -- destination, source and selection (JSON)
    snapshot TEXT NOT NULL,      -- e.g. the commit the revision pointed to
    jobs     TEXT NOT NULL,      -- JSON list of the ids of the jobs whose rows are the listing
    files    INTEGER NOT NULL,   -- how many rows: fewer means a job was removed since
    recorded REAL NOT NULL
);

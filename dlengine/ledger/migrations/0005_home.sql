-- The home's identity: a random id written into every mountpath it uses
-- (<mountpath>/.dlengine-home), so a second home pointed at the same
-- mountpath is refused instead of sharing work files named by row id.
CREATE TABLE home (
    id TEXT NOT NULL
);
INSERT INTO home (id) VALUES (lower(hex(randomblob(16))));

-- Custody of the master key: how this store is sealed (a quorum's share set), and what
-- recognises the right key. Never the key itself, never a share. One row at most.
CREATE TABLE custody_seal (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    record  TEXT NOT NULL
);

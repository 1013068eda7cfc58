-- The root key wrapped by the master key, once the master key was replaced (core.root): the
-- current wrapping, and a pending one while a replacement is under way. A store with no row
-- here has the master key's own bytes as its root key. Never a key in the clear.
CREATE TABLE custody_root (
    slot    TEXT PRIMARY KEY CHECK (slot IN ('current', 'pending')),
    record  TEXT NOT NULL
);

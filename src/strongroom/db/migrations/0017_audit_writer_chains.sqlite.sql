-- Writer chains (see the PostgreSQL step): SQLite keeps writing chain 1 only, but shares the
-- schema, and anchors every batch that changes a secret (the change feed follows anchors).
-- The head table loses its "id = 1" check: rebuilt, as SQLite cannot drop a constraint.
CREATE TABLE secrets_audit_chain_new (
    id          INTEGER PRIMARY KEY CHECK (id >= 0),
    last_seq    INTEGER NOT NULL,
    last_hash   BLOB    NOT NULL,
    anchor_seq  INTEGER NOT NULL,
    anchor_hash BLOB    NOT NULL
);

INSERT INTO secrets_audit_chain_new (id, last_seq, last_hash, anchor_seq, anchor_hash)
SELECT id, last_seq, last_hash, anchor_seq, anchor_hash FROM secrets_audit_chain;

DROP TABLE secrets_audit_chain;

ALTER TABLE secrets_audit_chain_new RENAME TO secrets_audit_chain;

INSERT INTO secrets_audit_chain (id, last_seq, last_hash, anchor_seq, anchor_hash)
VALUES (0, 0, zeroblob(32), 0, zeroblob(32));

CREATE TABLE secrets_audit_anchors (
    seq         INTEGER PRIMARY KEY,
    chain_id    INTEGER NOT NULL,
    first_seq   INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    chain_hash  BLOB    NOT NULL,
    changes     INTEGER NOT NULL,
    anchored_at INTEGER NOT NULL,
    prev_hash   BLOB    NOT NULL,
    anchor_hash BLOB    NOT NULL
);

CREATE INDEX secrets_audit_anchors_chain ON secrets_audit_anchors (chain_id, last_seq);

-- Edge journals shipped to the centre: per site, the last edge event stored (its position in
-- the edge's own chain and that event's chain hash). The events themselves are in
-- secrets_audit_log, chained at the centre, with the site and their edge links in details.
CREATE TABLE edge_journal_heads (
    site       TEXT    PRIMARY KEY,
    last_seq   INTEGER NOT NULL,
    last_hash  BLOB    NOT NULL,
    shipped    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

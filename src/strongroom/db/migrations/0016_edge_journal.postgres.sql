-- Edge journals shipped to the centre: per site, the last edge event stored (its position in
-- the edge's own chain and that event's chain hash). The events themselves are in
-- secrets_audit_log, chained at the centre, with the site and their edge links in details.
CREATE TABLE edge_journal_heads (
    site       VARCHAR(128) PRIMARY KEY,
    last_seq   BIGINT       NOT NULL,
    last_hash  BYTEA        NOT NULL,
    shipped    BIGINT       NOT NULL,
    updated_at TIMESTAMPTZ  NOT NULL
);

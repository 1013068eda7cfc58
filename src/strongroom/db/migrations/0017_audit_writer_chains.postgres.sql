-- Writer chains: each writer process appends to a chain of its own (a head row per chain in
-- secrets_audit_chain, id = chain number; chain c owns the audit ids (c - 1) * 10^12 + 1 ...),
-- and anchors it now and then into the global chain below, whose head is row 0.
ALTER TABLE secrets_audit_chain DROP CONSTRAINT secrets_audit_chain_id_check;
ALTER TABLE secrets_audit_chain ADD CONSTRAINT secrets_audit_chain_id_check CHECK (id >= 0);
INSERT INTO secrets_audit_chain (id, last_seq, last_hash, anchor_seq, anchor_hash)
VALUES (0, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea, 0,
        '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);

-- The global chain: "writer chain chain_id covered first_seq..last_seq, ending with
-- chain_hash", HMAC-chained in seq order (gapless, written under row 0's lock).
CREATE TABLE secrets_audit_anchors (
    seq         BIGINT      PRIMARY KEY,
    chain_id    BIGINT      NOT NULL,
    first_seq   BIGINT      NOT NULL,
    last_seq    BIGINT      NOT NULL,
    chain_hash  BYTEA       NOT NULL,
    changes     BOOLEAN     NOT NULL,
    anchored_at TIMESTAMPTZ NOT NULL,
    prev_hash   BYTEA       NOT NULL,
    anchor_hash BYTEA       NOT NULL
);

CREATE INDEX secrets_audit_anchors_chain ON secrets_audit_anchors (chain_id, last_seq);

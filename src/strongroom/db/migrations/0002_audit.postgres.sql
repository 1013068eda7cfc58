-- Audit log: the seed's secrets_audit_log plus the hash chain. id is the chain position
-- (gapless, assigned under the chain head row lock).
CREATE TABLE secrets_audit_log (
    id               BIGINT      PRIMARY KEY,
    action           VARCHAR(32) NOT NULL,
    resource_name    VARCHAR(256),
    timestamp        TIMESTAMPTZ NOT NULL,
    result           VARCHAR(16) NOT NULL,
    actor_id         VARCHAR(256) NOT NULL,
    actor_ip         VARCHAR(64),
    actor_user_agent TEXT,
    details          JSONB       NOT NULL DEFAULT '{}'::jsonb,
    error_message    TEXT,
    error_code       VARCHAR(64),
    duration_ms      INTEGER,
    prev_hash        BYTEA       NOT NULL,
    chain_hash       BYTEA       NOT NULL
);

CREATE INDEX secrets_audit_log_resource_time ON secrets_audit_log (resource_name, timestamp);
CREATE INDEX secrets_audit_log_action_time ON secrets_audit_log (action, timestamp);
CREATE INDEX secrets_audit_log_actor_time ON secrets_audit_log (actor_id, timestamp);
CREATE INDEX secrets_audit_log_time ON secrets_audit_log (timestamp);
CREATE INDEX secrets_audit_log_failures ON secrets_audit_log (timestamp, actor_id)
    WHERE result = 'FAILURE';

-- The chain head (last id and hash) and the anchor left by retention pruning.
CREATE TABLE secrets_audit_chain (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq    BIGINT NOT NULL,
    last_hash   BYTEA  NOT NULL,
    anchor_seq  BIGINT NOT NULL,
    anchor_hash BYTEA  NOT NULL
);

INSERT INTO secrets_audit_chain (id, last_seq, last_hash, anchor_seq, anchor_hash)
VALUES (1, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea, 0,
        '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);

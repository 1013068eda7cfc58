-- Audit log: the seed's secrets_audit_log plus the hash chain. id is the chain position
-- (gapless, assigned under the chain head lock). Times are UTC microseconds.
CREATE TABLE secrets_audit_log (
    id               INTEGER PRIMARY KEY,
    action           TEXT    NOT NULL,
    resource_name    TEXT,
    timestamp        INTEGER NOT NULL,
    result           TEXT    NOT NULL,
    actor_id         TEXT    NOT NULL,
    actor_ip         TEXT,
    actor_user_agent TEXT,
    details          TEXT    NOT NULL DEFAULT '{}',
    error_message    TEXT,
    error_code       TEXT,
    duration_ms      INTEGER,
    prev_hash        BLOB    NOT NULL,
    chain_hash       BLOB    NOT NULL
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
    last_seq    INTEGER NOT NULL,
    last_hash   BLOB    NOT NULL,
    anchor_seq  INTEGER NOT NULL,
    anchor_hash BLOB    NOT NULL
);

INSERT INTO secrets_audit_chain (id, last_seq, last_hash, anchor_seq, anchor_hash)
VALUES (1, 0, zeroblob(32), 0, zeroblob(32));

-- Emergency revocation: versions can be revoked (never readable again), and requests with their
-- approvals live in the seed's secrets_revocation_log.
ALTER TABLE secret_versions ADD COLUMN revoked_at INTEGER;

CREATE TABLE secrets_revocation_log (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    secret_name        TEXT    NOT NULL,
    reason             TEXT    NOT NULL,
    status             TEXT    NOT NULL,
    severity           TEXT    NOT NULL,
    requested_by       TEXT    NOT NULL,
    requested_at       INTEGER NOT NULL,
    approved_by        TEXT,
    revoked_at         INTEGER,
    notify_recipients  TEXT    NOT NULL DEFAULT '[]',
    details            TEXT    NOT NULL DEFAULT '{}',
    required_approvals INTEGER NOT NULL DEFAULT 1,
    approvals          TEXT    NOT NULL DEFAULT '[]',
    closed_by          TEXT,
    closed_at          INTEGER,
    updated_at         INTEGER NOT NULL
);

CREATE INDEX secrets_revocation_log_secret ON secrets_revocation_log (secret_name, requested_at);
CREATE INDEX secrets_revocation_log_pending ON secrets_revocation_log (requested_at)
    WHERE status = 'PENDING';

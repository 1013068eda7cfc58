-- Emergency revocation: versions can be revoked (never readable again), and requests with their
-- approvals live in the seed's secrets_revocation_log.
ALTER TABLE secret_versions ADD COLUMN revoked_at TIMESTAMPTZ;

CREATE TABLE secrets_revocation_log (
    id                 BIGSERIAL    PRIMARY KEY,
    secret_name        VARCHAR(127) NOT NULL,
    reason             VARCHAR(64)  NOT NULL,
    status             VARCHAR(16)  NOT NULL,
    severity           VARCHAR(16)  NOT NULL,
    requested_by       VARCHAR(256) NOT NULL,
    requested_at       TIMESTAMPTZ  NOT NULL,
    approved_by        VARCHAR(256),
    revoked_at         TIMESTAMPTZ,
    notify_recipients  TEXT[]       NOT NULL DEFAULT '{}',
    details            JSONB        NOT NULL DEFAULT '{}'::jsonb,
    required_approvals INTEGER      NOT NULL DEFAULT 1,
    approvals          JSONB        NOT NULL DEFAULT '[]'::jsonb,
    closed_by          VARCHAR(256),
    closed_at          TIMESTAMPTZ,
    updated_at         TIMESTAMPTZ  NOT NULL
);

CREATE INDEX secrets_revocation_log_secret ON secrets_revocation_log (secret_name, requested_at);
CREATE INDEX secrets_revocation_log_pending ON secrets_revocation_log (requested_at)
    WHERE status = 'PENDING';

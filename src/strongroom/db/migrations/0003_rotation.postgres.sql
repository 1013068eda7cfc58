-- Rotation: the seed's secrets_rotation_config plus what scheduling, retries, leases and the
-- grace period need. due_at is the one column the scheduler's due check reads.
CREATE TABLE secrets_rotation_config (
    secret_name                  VARCHAR(127) PRIMARY KEY,
    rotation_days                INTEGER      NOT NULL,
    rotation_hours_before_expiry INTEGER      NOT NULL,
    enabled                      BOOLEAN      NOT NULL,
    description                  TEXT         NOT NULL DEFAULT '',
    force_on_next                BOOLEAN      NOT NULL DEFAULT false,
    last_rotation                TIMESTAMPTZ,
    next_rotation                TIMESTAMPTZ,
    display_name                 VARCHAR(127) NOT NULL,
    generator                    VARCHAR(64),
    generator_options            TEXT         NOT NULL DEFAULT '{}',
    has_callback                 BOOLEAN      NOT NULL DEFAULT false,
    rotator                      VARCHAR(127),
    secret_type                  VARCHAR(64),
    grace_period_hours           INTEGER      NOT NULL,
    expires_at                   TIMESTAMPTZ,
    due_at                       TIMESTAMPTZ  NOT NULL,
    attempts                     INTEGER      NOT NULL DEFAULT 0,
    last_attempt                 TIMESTAMPTZ,
    last_result                  VARCHAR(16),
    last_error                   TEXT,
    lease_owner                  VARCHAR(128),
    lease_until                  TIMESTAMPTZ,
    previous_version             VARCHAR(32),
    previous_disable_at          TIMESTAMPTZ,
    created_at                   TIMESTAMPTZ  NOT NULL,
    updated_at                   TIMESTAMPTZ  NOT NULL
);

CREATE INDEX secrets_rotation_config_due ON secrets_rotation_config (due_at) WHERE enabled;
CREATE INDEX secrets_rotation_config_grace ON secrets_rotation_config (previous_disable_at)
    WHERE previous_disable_at IS NOT NULL;

-- Rotation: the seed's secrets_rotation_config plus what scheduling, retries, leases and the
-- grace period need. due_at is the one column the scheduler's due check reads.
CREATE TABLE secrets_rotation_config (
    secret_name                  TEXT    PRIMARY KEY,
    rotation_days                INTEGER NOT NULL,
    rotation_hours_before_expiry INTEGER NOT NULL,
    enabled                      INTEGER NOT NULL,
    description                  TEXT    NOT NULL DEFAULT '',
    force_on_next                INTEGER NOT NULL DEFAULT 0,
    last_rotation                INTEGER,
    next_rotation                INTEGER,
    display_name                 TEXT    NOT NULL,
    generator                    TEXT,
    generator_options            TEXT    NOT NULL DEFAULT '{}',
    has_callback                 INTEGER NOT NULL DEFAULT 0,
    rotator                      TEXT,
    secret_type                  TEXT,
    grace_period_hours           INTEGER NOT NULL,
    expires_at                   INTEGER,
    due_at                       INTEGER NOT NULL,
    attempts                     INTEGER NOT NULL DEFAULT 0,
    last_attempt                 INTEGER,
    last_result                  TEXT,
    last_error                   TEXT,
    lease_owner                  TEXT,
    lease_until                  INTEGER,
    previous_version             TEXT,
    previous_disable_at          INTEGER,
    created_at                   INTEGER NOT NULL,
    updated_at                   INTEGER NOT NULL
);

CREATE INDEX secrets_rotation_config_due ON secrets_rotation_config (due_at) WHERE enabled = 1;
CREATE INDEX secrets_rotation_config_grace ON secrets_rotation_config (previous_disable_at)
    WHERE previous_disable_at IS NOT NULL;

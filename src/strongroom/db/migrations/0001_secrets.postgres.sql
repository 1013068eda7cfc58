-- Secret store: keyring, secrets and their sealed versions.
CREATE TABLE secret_keyring (
    version      INTEGER     PRIMARY KEY,
    wrapped_key  BYTEA       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    retired_at   TIMESTAMPTZ
);

CREATE TABLE secrets (
    name_key     TEXT        PRIMARY KEY,
    name         TEXT        NOT NULL,
    current_seq  INTEGER     NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    deleted_at   TIMESTAMPTZ,
    purge_at     TIMESTAMPTZ
);

CREATE INDEX secrets_purge_at ON secrets (purge_at) WHERE purge_at IS NOT NULL;

CREATE TABLE secret_versions (
    name_key     TEXT        NOT NULL REFERENCES secrets (name_key) ON DELETE CASCADE,
    seq          INTEGER     NOT NULL,
    version      TEXT        NOT NULL,
    secret_type  TEXT        NOT NULL,
    content_type TEXT,
    tags         JSONB       NOT NULL,
    enabled      BOOLEAN     NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ,
    not_before   TIMESTAMPTZ,
    ciphertext   BYTEA       NOT NULL,
    wrapped_dek  BYTEA       NOT NULL,
    kek_version  INTEGER     NOT NULL REFERENCES secret_keyring (version),
    PRIMARY KEY (name_key, seq),
    UNIQUE (name_key, version)
);

CREATE INDEX secret_versions_kek ON secret_versions (kek_version);

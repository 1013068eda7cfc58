-- Secret store: keyring, secrets and their sealed versions. Times are UTC microseconds.
CREATE TABLE secret_keyring (
    version      INTEGER PRIMARY KEY,
    wrapped_key  BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    retired_at   INTEGER
);

CREATE TABLE secrets (
    name_key     TEXT    PRIMARY KEY,
    name         TEXT    NOT NULL,
    current_seq  INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    deleted_at   INTEGER,
    purge_at     INTEGER
);

CREATE INDEX secrets_purge_at ON secrets (purge_at) WHERE purge_at IS NOT NULL;

CREATE TABLE secret_versions (
    name_key     TEXT    NOT NULL REFERENCES secrets (name_key) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    version      TEXT    NOT NULL,
    secret_type  TEXT    NOT NULL,
    content_type TEXT,
    tags         TEXT    NOT NULL,
    enabled      INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    not_before   INTEGER,
    ciphertext   BLOB    NOT NULL,
    wrapped_dek  BLOB    NOT NULL,
    kek_version  INTEGER NOT NULL REFERENCES secret_keyring (version),
    PRIMARY KEY (name_key, seq),
    UNIQUE (name_key, version)
);

CREATE INDEX secret_versions_kek ON secret_versions (kek_version);

-- Key Vault keys (the keys subset of the Key Vault-compatible API): one row per key version.
-- The private key is sealed like a secret value (a data key under the keyring, associated
-- data naming the key and version); the public key is stored in the clear. The MAC covers
-- the fields that decide how a key may be used (strongroom.core.integrity).
CREATE TABLE vault_keys (
    name_key     TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    name         TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    kty          TEXT    NOT NULL,
    key_size     INTEGER NOT NULL,
    key_ops      TEXT    NOT NULL,
    public_key   BLOB    NOT NULL,
    private_key  BLOB    NOT NULL,
    wrapped_dek  BLOB    NOT NULL,
    kek_version  INTEGER NOT NULL REFERENCES secret_keyring (version),
    enabled      INTEGER NOT NULL,
    tags         TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    mac          BLOB    NOT NULL,
    PRIMARY KEY (name_key, seq),
    UNIQUE (name_key, version)
);

CREATE INDEX vault_keys_kek ON vault_keys (kek_version);

-- Revocation tombstones: every version of secret_name created at or before revoked_at was
-- revoked by revocation_id. Kept when the secret is purged, so a backup taken before the
-- revocation can never bring a revoked value back.
CREATE TABLE secrets_revocation_tombstones (
    name_key      TEXT    NOT NULL,
    revocation_id INTEGER NOT NULL,
    revoked_at    INTEGER NOT NULL,
    PRIMARY KEY (name_key, revocation_id)
);

-- Row MACs over the secret store's security-relevant fields (strongroom.core.integrity): a
-- generation per secret that every change advances, the generation of its last revocation,
-- and per version the generation it was last written at. Existing rows are MACed in this
-- step's transaction by the store that holds the master key (strongroom.db.migrate).
ALTER TABLE secrets ADD COLUMN gen INTEGER NOT NULL DEFAULT 1;
ALTER TABLE secrets ADD COLUMN revoked_gen INTEGER;
ALTER TABLE secrets ADD COLUMN mac BYTEA;
ALTER TABLE secret_versions ADD COLUMN gen INTEGER NOT NULL DEFAULT 1;
ALTER TABLE secret_versions ADD COLUMN mac BYTEA;

-- The audit chain key epoch each chain's head has reached (0: the key derived from the root
-- key; each master key replacement adds one): a writer holding an older key stops there.
ALTER TABLE secrets_audit_chain ADD COLUMN key_epoch INTEGER NOT NULL DEFAULT 0;

-- Row MACs over tokens, policies and identity-policy bindings (strongroom.core.integrity).
-- Existing rows are MACed in this step's transaction by a store that holds the master key.
ALTER TABLE strongroom_tokens ADD COLUMN mac BYTEA;
ALTER TABLE strongroom_policies ADD COLUMN mac BYTEA;
ALTER TABLE strongroom_identity_policies ADD COLUMN mac BYTEA;

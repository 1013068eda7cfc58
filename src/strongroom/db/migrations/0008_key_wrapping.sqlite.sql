-- Keyring rows say how they are wrapped: 1 by the master key itself (stores made before the
-- derived wrapping key), 2 by the wrapping key derived from it. Opening a store with the
-- master key re-wraps every row of kind 1 as kind 2.
ALTER TABLE secret_keyring ADD COLUMN wrapping INTEGER NOT NULL DEFAULT 1;

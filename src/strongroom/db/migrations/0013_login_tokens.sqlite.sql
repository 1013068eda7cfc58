-- Tokens issued by a login (JWT/OIDC): how the caller proved itself and the policies its role
-- gives (meta, JSON, covered by the row MAC), and how far renewals may extend it.
ALTER TABLE strongroom_tokens ADD COLUMN meta TEXT;
ALTER TABLE strongroom_tokens ADD COLUMN max_expires_at INTEGER;

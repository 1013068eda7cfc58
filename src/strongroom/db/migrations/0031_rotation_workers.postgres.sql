-- Rotation workers: a schedule whose new values come from external worker processes (their
-- callbacks, or built-in generators run on the worker's host). The in-server scheduler leaves
-- such rows to the workers, which claim them with the same leases.
ALTER TABLE secrets_rotation_config ADD COLUMN external BOOLEAN NOT NULL DEFAULT false;

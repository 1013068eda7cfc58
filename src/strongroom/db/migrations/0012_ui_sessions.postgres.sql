-- Console sessions: the cookie holds a random session id; only its SHA-256 is stored. A session
-- names the sign-in method and its subject (a token id for token sign-in), which is checked
-- again on every request. The MAC (HMAC under the metadata key) covers every column but
-- last_seen, so nobody who can write the database can point a session at another identity.
CREATE TABLE strongroom_ui_sessions (
    id_hash     BYTEA        PRIMARY KEY,
    identity    VARCHAR(128) NOT NULL,
    method      VARCHAR(32)  NOT NULL,
    subject     VARCHAR(256) NOT NULL,
    csrf        VARCHAR(64)  NOT NULL,
    created_at  TIMESTAMPTZ  NOT NULL,
    last_seen   TIMESTAMPTZ  NOT NULL,
    expires_at  TIMESTAMPTZ  NOT NULL,
    mac         BYTEA
);
CREATE INDEX strongroom_ui_sessions_expires ON strongroom_ui_sessions (expires_at);

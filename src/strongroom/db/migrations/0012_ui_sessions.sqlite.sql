-- Console sessions: the cookie holds a random session id; only its SHA-256 is stored. A session
-- names the sign-in method and its subject (a token id for token sign-in), which is checked
-- again on every request. The MAC (HMAC under the metadata key) covers every column but
-- last_seen, so nobody who can write the database can point a session at another identity.
CREATE TABLE strongroom_ui_sessions (
    id_hash     BLOB    PRIMARY KEY,
    identity    TEXT    NOT NULL,
    method      TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    csrf        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    mac         BLOB
);
CREATE INDEX strongroom_ui_sessions_expires ON strongroom_ui_sessions (expires_at);

-- Access control for the HTTP service: policies, which identities hold them, and bearer tokens
-- (stored only as a keyed hash; the token itself is shown once, at creation).
CREATE TABLE strongroom_policies (
    name        TEXT    PRIMARY KEY,
    description TEXT    NOT NULL,
    grants      TEXT    NOT NULL,
    updated_by  TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE strongroom_identity_policies (
    identity    TEXT    NOT NULL,
    policy      TEXT    NOT NULL,
    PRIMARY KEY (identity, policy)
);

CREATE TABLE strongroom_tokens (
    id          TEXT    PRIMARY KEY,
    identity    TEXT    NOT NULL,
    digest      BLOB    NOT NULL,
    description TEXT    NOT NULL,
    created_by  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER,
    revoked_by  TEXT
);
CREATE INDEX strongroom_tokens_identity ON strongroom_tokens (identity);

-- Access control for the HTTP service: policies, which identities hold them, and bearer tokens
-- (stored only as a keyed hash; the token itself is shown once, at creation).
CREATE TABLE strongroom_policies (
    name        VARCHAR(64)  PRIMARY KEY,
    description VARCHAR(512) NOT NULL,
    grants      JSONB        NOT NULL,
    updated_by  VARCHAR(256) NOT NULL,
    updated_at  TIMESTAMPTZ  NOT NULL
);

CREATE TABLE strongroom_identity_policies (
    identity    VARCHAR(128) NOT NULL,
    policy      VARCHAR(64)  NOT NULL,
    PRIMARY KEY (identity, policy)
);

CREATE TABLE strongroom_tokens (
    id          VARCHAR(32)  PRIMARY KEY,
    identity    VARCHAR(128) NOT NULL,
    digest      BYTEA        NOT NULL,
    description VARCHAR(256) NOT NULL,
    created_by  VARCHAR(256) NOT NULL,
    created_at  TIMESTAMPTZ  NOT NULL,
    expires_at  TIMESTAMPTZ,
    revoked_at  TIMESTAMPTZ,
    revoked_by  VARCHAR(256)
);
CREATE INDEX strongroom_tokens_identity ON strongroom_tokens (identity);

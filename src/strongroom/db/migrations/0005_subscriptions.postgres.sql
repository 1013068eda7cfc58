-- Event subscriptions (webhooks for the services that use a secret) and the expiry notices
-- already sent, so each warning goes out once per version.
CREATE TABLE secrets_subscriptions (
    id          BIGSERIAL    PRIMARY KEY,
    url         TEXT         NOT NULL,
    pattern     VARCHAR(127) NOT NULL,
    events      TEXT         NOT NULL,
    created_by  VARCHAR(256) NOT NULL,
    created_at  TIMESTAMPTZ  NOT NULL
);

CREATE TABLE secrets_expiry_notices (
    secret_name VARCHAR(127) NOT NULL,
    version     VARCHAR(32)  NOT NULL,
    kind        VARCHAR(32)  NOT NULL,
    sent_at     TIMESTAMPTZ  NOT NULL,
    PRIMARY KEY (secret_name, version, kind)
);

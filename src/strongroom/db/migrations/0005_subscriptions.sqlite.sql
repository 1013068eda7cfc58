-- Event subscriptions (webhooks for the services that use a secret) and the expiry notices
-- already sent, so each warning goes out once per version.
CREATE TABLE secrets_subscriptions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    url         TEXT    NOT NULL,
    pattern     TEXT    NOT NULL,
    events      TEXT    NOT NULL,
    created_by  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE secrets_expiry_notices (
    secret_name TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    sent_at     INTEGER NOT NULL,
    PRIMARY KEY (secret_name, version, kind)
);

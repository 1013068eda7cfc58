-- The Azure profile with secondary vaults: each write to the primary vault first records, per
-- secondary, that the name must be copied there; the row goes once the secondary matches. One
-- row per (vault, name): writes in a row coalesce, and `generation` tells a copy that raced a
-- newer write not to remove the row. Times are microseconds since the epoch. No value is kept
-- here, only names.
CREATE TABLE azure_replication_outbox (
    target        VARCHAR(512) NOT NULL,
    name_key      VARCHAR(127) NOT NULL,
    name          VARCHAR(127) NOT NULL,
    generation    INTEGER      NOT NULL,
    enqueued_at   INTEGER      NOT NULL,
    next_at       INTEGER      NOT NULL,
    claimed_until INTEGER,
    attempts      INTEGER      NOT NULL DEFAULT 0,
    last_error    VARCHAR(64),
    PRIMARY KEY (target, name_key)
);

CREATE INDEX azure_replication_outbox_due ON azure_replication_outbox (next_at);

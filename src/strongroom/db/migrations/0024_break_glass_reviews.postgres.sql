-- Break-glass reviews: every revocation executed without approval waits here until a second
-- identity acknowledges it with a note. Overdue reviews are notified again, with escalation.
CREATE TABLE break_glass_reviews (
    revocation_id   BIGINT       PRIMARY KEY REFERENCES secrets_revocation_log (id),
    secret_name     VARCHAR(127) NOT NULL,
    used_by         VARCHAR(256) NOT NULL,
    opened_at       TIMESTAMPTZ  NOT NULL,
    due_at          TIMESTAMPTZ  NOT NULL,
    status          VARCHAR(16)  NOT NULL,
    acknowledged_by VARCHAR(256),
    acknowledged_at TIMESTAMPTZ,
    note            TEXT,
    escalations     INTEGER      NOT NULL DEFAULT 0,
    escalated_at    TIMESTAMPTZ
);

CREATE INDEX break_glass_reviews_open ON break_glass_reviews (due_at) WHERE status = 'OPEN';

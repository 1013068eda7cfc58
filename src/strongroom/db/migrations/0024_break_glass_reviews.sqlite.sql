-- Break-glass reviews: every revocation executed without approval waits here until a second
-- identity acknowledges it with a note. Overdue reviews are notified again, with escalation.
CREATE TABLE break_glass_reviews (
    revocation_id   INTEGER PRIMARY KEY REFERENCES secrets_revocation_log (id),
    secret_name     TEXT    NOT NULL,
    used_by         TEXT    NOT NULL,
    opened_at       INTEGER NOT NULL,
    due_at          INTEGER NOT NULL,
    status          TEXT    NOT NULL,
    acknowledged_by TEXT,
    acknowledged_at INTEGER,
    note            TEXT,
    escalations     INTEGER NOT NULL DEFAULT 0,
    escalated_at    INTEGER
);

CREATE INDEX break_glass_reviews_open ON break_glass_reviews (due_at) WHERE status = 'OPEN';

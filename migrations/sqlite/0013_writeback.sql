-- Write-back (issue 15). See the Postgres migration of the same number for
-- what each table and column means.
CREATE TABLE writeback_types (
    practice_id TEXT    NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('sms_log', 'email_log', 'call_log',
        'confirmation', 'document', 'new_patient', 'new_appointment')),
    enabled     INTEGER NOT NULL,
    enabled_at  TEXT,
    changed_at  TEXT    NOT NULL,
    changed_by  TEXT    NOT NULL,
    PRIMARY KEY (practice_id, kind)
);

CREATE TABLE writeback_practices (
    practice_id      TEXT NOT NULL PRIMARY KEY,
    note_provider_id INTEGER,
    claim_job_id     TEXT,
    claim_until      TEXT
);

CREATE TABLE writeback_outbox (
    item_id         INTEGER PRIMARY KEY AUTOINCREMENT,
    practice_id     TEXT    NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('sms_log', 'email_log', 'call_log',
        'confirmation', 'document', 'new_patient', 'new_appointment')),
    idempotency_key TEXT    NOT NULL,
    marker          TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'blocked', 'sending',
        'sent', 'failed', 'dead')),
    reason          TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    submitted_at    TEXT    NOT NULL,
    submitted_by    TEXT    NOT NULL,
    first_sent_at   TEXT,
    next_attempt_at TEXT,
    sent_at         TEXT,
    ascend_id       INTEGER,
    found           INTEGER NOT NULL DEFAULT 0,
    updated_at      TEXT    NOT NULL,
    UNIQUE (practice_id, idempotency_key)
);

CREATE INDEX writeback_outbox_due_idx ON writeback_outbox (practice_id, next_attempt_at)
    WHERE status IN ('pending', 'failed', 'sending');

-- Quarantine instead of stalls (issue 12). See the Postgres migration of
-- the same number for what each column means. raw and reason are patient
-- data: never logged.
CREATE TABLE quarantine (
    practice_id   TEXT    NOT NULL,
    resource      TEXT    NOT NULL,
    record_key    TEXT    NOT NULL,
    record_id     TEXT,
    raw           TEXT    NOT NULL,
    reason        TEXT    NOT NULL,
    first_seen_at TEXT    NOT NULL,
    last_tried_at TEXT    NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 1,
    CONSTRAINT quarantine_pkey PRIMARY KEY (practice_id, resource, record_key),
    CONSTRAINT quarantine_practice_fkey FOREIGN KEY (practice_id)
        REFERENCES practices (practice_id) ON DELETE CASCADE,
    CONSTRAINT quarantine_attempts_check CHECK (attempts >= 1)
);

ALTER TABLE sync_state ADD COLUMN failing_since TEXT;

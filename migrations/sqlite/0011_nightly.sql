-- The nightly role (issue 13). See the Postgres migration of the same
-- number for what each column and table means.
ALTER TABLE practices ADD COLUMN time_zone TEXT;
ALTER TABLE practices ADD COLUMN nightly_start_minute INTEGER NOT NULL DEFAULT 60
    CONSTRAINT practices_nightly_start_check CHECK (nightly_start_minute BETWEEN 0 AND 1439);
ALTER TABLE practices ADD COLUMN nightly_end_minute INTEGER NOT NULL DEFAULT 300
    CONSTRAINT practices_nightly_end_check CHECK (nightly_end_minute BETWEEN 0 AND 1439);

CREATE TABLE nightly_passes (
    pass_id       TEXT    NOT NULL,
    practice_id   TEXT    NOT NULL,
    trigger       TEXT    NOT NULL,
    started_at    TEXT    NOT NULL,
    ended_at      TEXT,
    status        TEXT    NOT NULL,
    checked       INTEGER NOT NULL DEFAULT 0,
    applied       INTEGER NOT NULL DEFAULT 0,
    cancelled     INTEGER NOT NULL DEFAULT 0,
    api_calls     INTEGER NOT NULL DEFAULT 0,
    error_class   TEXT,
    error_message TEXT,
    CONSTRAINT nightly_passes_pkey PRIMARY KEY (pass_id, practice_id),
    CONSTRAINT nightly_passes_status_check CHECK (status IN
        ('running', 'succeeded', 'partial', 'failed', 'interrupted')),
    CONSTRAINT nightly_passes_trigger_check CHECK (trigger IN ('window', 'operator'))
);
CREATE INDEX nightly_passes_practice_idx ON nightly_passes (practice_id, started_at);
CREATE INDEX nightly_passes_started_idx ON nightly_passes (started_at);

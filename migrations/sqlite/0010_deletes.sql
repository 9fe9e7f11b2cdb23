-- Deletes (issue 13). See the Postgres migration of the same number for
-- what each table and column means. raw is patient data.
CREATE TABLE captured_deletes (
    practice_id TEXT    NOT NULL,
    resource    TEXT    NOT NULL,
    record_id   INTEGER NOT NULL,
    detected_at TEXT    NOT NULL,
    how         TEXT    NOT NULL,
    CONSTRAINT captured_deletes_pkey PRIMARY KEY (practice_id, resource, record_id),
    CONSTRAINT captured_deletes_practice_fkey FOREIGN KEY (practice_id)
        REFERENCES practices (practice_id) ON DELETE CASCADE,
    CONSTRAINT captured_deletes_how_check CHECK (how IN ('hot_window', 'daily', 'left_scope'))
);

CREATE TABLE deleted_records (
    practice_id   TEXT    NOT NULL,
    resource      TEXT    NOT NULL,
    record_id     INTEGER NOT NULL,
    last_modified TEXT,
    raw           TEXT    NOT NULL,
    detected_at   TEXT    NOT NULL,
    how           TEXT    NOT NULL,
    applied_at    TEXT    NOT NULL,
    CONSTRAINT deleted_records_pkey PRIMARY KEY (practice_id, resource, record_id)
);
CREATE INDEX deleted_records_applied_at_idx ON deleted_records (applied_at);

ALTER TABLE sync_state ADD COLUMN reconciled_at TEXT;

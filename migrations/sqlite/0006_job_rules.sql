-- The job rules of the decision core (issue 11). See the Postgres
-- migration of the same number for what each column means.
ALTER TABLE practices ADD COLUMN credential_version INTEGER NOT NULL DEFAULT 0;

ALTER TABLE sync_chunks ADD COLUMN queued_at TEXT;

ALTER TABLE sync_state ADD COLUMN not_offered_since TEXT;

ALTER TABLE practices ADD COLUMN claimed_at_once INTEGER NOT NULL DEFAULT 0;

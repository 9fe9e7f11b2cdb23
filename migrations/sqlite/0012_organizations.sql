-- One pull per organization, and completeness a practice can see (issue
-- 14). See the Postgres migration of the same number for what each column
-- means.
ALTER TABLE sync_state ADD COLUMN ascend_count INTEGER;
ALTER TABLE sync_state ADD COLUMN held_count INTEGER;
ALTER TABLE sync_state ADD COLUMN counted_at TEXT;
ALTER TABLE sync_state ADD COLUMN complete_at TEXT;
ALTER TABLE sync_state ADD COLUMN mismatch_since TEXT;
ALTER TABLE sync_state ADD COLUMN mismatches INTEGER NOT NULL DEFAULT 0
    CONSTRAINT sync_state_mismatches_check CHECK (mismatches >= 0);
ALTER TABLE sync_state ADD COLUMN passed_at TEXT;
ALTER TABLE sync_state ADD COLUMN shared_from TEXT;
CREATE INDEX practices_organization_idx ON practices (organization_id);

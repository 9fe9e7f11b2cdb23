-- A resumable incremental pass (issue 12). See the Postgres migration of
-- the same number for what each column means.
ALTER TABLE sync_state ADD COLUMN pass_started_at TEXT;
ALTER TABLE sync_state ADD COLUMN pass_after_id INTEGER;
ALTER TABLE sync_state ADD COLUMN pass_max_seen TEXT;

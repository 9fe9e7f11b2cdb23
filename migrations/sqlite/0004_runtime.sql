-- The job runtime: scheduling claims on practices, leases, sync history.
-- Timestamps are TEXT in the store's fixed-width UTC form
-- (YYYY-MM-DDTHH:MM:SS.ffffffZ), so that text order is time order.

-- Scheduling. next_sync_at NULL means "due now". A practice is claimed by
-- one job at a time: inflight_job_id until inflight_until; a claim past
-- its time is free to be taken again.
ALTER TABLE practices ADD COLUMN next_sync_at    TEXT;
ALTER TABLE practices ADD COLUMN inflight_job_id TEXT;
ALTER TABLE practices ADD COLUMN inflight_until  TEXT;
-- Whether the in-flight job is a Force Sync Now (on the priority lane):
-- a second request while it is queued folds into it.
ALTER TABLE practices ADD COLUMN inflight_forced INTEGER NOT NULL DEFAULT 0;

-- No index on next_sync_at: a tick reads the practices table whole (one
-- row per practice location: thousands at most), and an index on a
-- column every claim updates would cost each claim an index write.

-- Leases: keys like practice:{id} and chunk:{chunk_id}. A lease past
-- expires_at is free; only its holder renews or releases it.
CREATE TABLE job_leases (
    lease_key   TEXT NOT NULL,
    holder      TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    acquired_at TEXT NOT NULL,
    CONSTRAINT job_leases_pkey PRIMARY KEY (lease_key),
    CONSTRAINT job_leases_key_check CHECK (lease_key <> ''),
    CONSTRAINT job_leases_holder_check CHECK (holder <> '')
);

-- Sync history: one row per attempt. No foreign key to practices: the
-- history outlives anything done to a practice. practice_id is '' for a
-- dead-lettered message whose practice is unknown (a poison message).
CREATE TABLE sync_runs (
    run_id        TEXT    NOT NULL,
    job_id        TEXT    NOT NULL,
    practice_id   TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    trigger       TEXT    NOT NULL,
    attempt       INTEGER NOT NULL,
    worker        TEXT,
    started_at    TEXT    NOT NULL,
    ended_at      TEXT,
    status        TEXT    NOT NULL,
    -- JSON text: [{resource, fetched, written, error_class?, error?}, ...]
    resources     TEXT,
    fetched       INTEGER,
    written       INTEGER,
    api_calls     INTEGER,
    bytes         INTEGER,
    error_class   TEXT,
    error_message TEXT,
    CONSTRAINT sync_runs_pkey PRIMARY KEY (run_id),
    CONSTRAINT sync_runs_status_check CHECK (status IN
        ('running', 'succeeded', 'partial', 'failed', 'retrying', 'dead_lettered', 'skipped')),
    CONSTRAINT sync_runs_attempt_check CHECK (attempt >= 0)
);

-- "Everything in the last day".
CREATE INDEX sync_runs_started_idx ON sync_runs (started_at);
-- "A practice's last N runs".
CREATE INDEX sync_runs_practice_idx ON sync_runs (practice_id, started_at);
-- "The runs of a job" (dlq list's last error).
CREATE INDEX sync_runs_job_idx ON sync_runs (job_id, started_at);
-- "Every failure across practices in the last day". The status list must
-- stay the one HistoryQuery::failed_only writes, or the planner cannot use
-- it.
CREATE INDEX sync_runs_failed_idx ON sync_runs (started_at)
    WHERE status IN ('failed', 'partial', 'retrying', 'dead_lettered');

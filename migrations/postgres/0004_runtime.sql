-- The job runtime: scheduling claims on practices, leases, sync history.

-- Scheduling. next_sync_at NULL means "due now". A practice is claimed by
-- one job at a time: inflight_job_id until inflight_until; a claim past
-- its time is free to be taken again.
ALTER TABLE practices ADD COLUMN next_sync_at    timestamptz;
ALTER TABLE practices ADD COLUMN inflight_job_id text;
ALTER TABLE practices ADD COLUMN inflight_until  timestamptz;
-- Whether the in-flight job is a Force Sync Now (on the priority lane):
-- a second request while it is queued folds into it.
ALTER TABLE practices ADD COLUMN inflight_forced boolean NOT NULL DEFAULT false;

-- No index on next_sync_at: a tick reads the practices table whole (one
-- row per practice location: thousands at most), and an index on a
-- column every claim updates would cost each claim an index write.

-- Leases: keys like practice:{id} and chunk:{chunk_id}. A lease past
-- expires_at is free; only its holder renews or releases it.
CREATE TABLE job_leases (
    lease_key   text        NOT NULL,
    holder      text        NOT NULL,
    expires_at  timestamptz NOT NULL,
    acquired_at timestamptz NOT NULL,
    CONSTRAINT job_leases_pkey PRIMARY KEY (lease_key),
    CONSTRAINT job_leases_key_check CHECK (lease_key <> ''),
    CONSTRAINT job_leases_holder_check CHECK (holder <> '')
);

-- Sync history: one row per attempt. No foreign key to practices: the
-- history outlives anything done to a practice. practice_id is '' for a
-- dead-lettered message whose practice is unknown (a poison message).
CREATE TABLE sync_runs (
    run_id        text        NOT NULL,
    job_id        text        NOT NULL,
    practice_id   text        NOT NULL,
    kind          text        NOT NULL,
    trigger       text        NOT NULL,
    attempt       integer     NOT NULL,
    worker        text,
    started_at    timestamptz NOT NULL,
    ended_at      timestamptz,
    status        text        NOT NULL,
    -- [{resource, fetched, written, error_class?, error?}, ...]
    resources     jsonb,
    fetched       bigint,
    written       bigint,
    api_calls     bigint,
    bytes         bigint,
    error_class   text,
    error_message text,
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

-- Practices, per-resource sync state and the initial-sync chunk plan.
-- Timestamps are TEXT in one fixed-width UTC form, YYYY-MM-DDTHH:MM:SS.ffffffZ,
-- written by the store, so that text order is time order; the defaults
-- produce the same form and serve manual inserts only.

CREATE TABLE practices (
    practice_id           TEXT    NOT NULL,
    organization_id       TEXT    NOT NULL,
    location_id           INTEGER NOT NULL,
    api_base              TEXT    NOT NULL,
    sync_interval_minutes INTEGER NOT NULL DEFAULT 15,
    status                TEXT    NOT NULL DEFAULT 'initial_sync',
    status_detail         TEXT,
    created_at            TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    updated_at            TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    last_success_at       TEXT,
    -- Credentials (encrypted) arrive with a later migration, as new columns.
    CONSTRAINT practices_pkey PRIMARY KEY (practice_id),
    CONSTRAINT practices_practice_id_check CHECK (practice_id <> ''),
    CONSTRAINT practices_sync_interval_check
        CHECK (sync_interval_minutes IN (2, 5, 10, 15, 30, 45, 60)),
    CONSTRAINT practices_status_check
        CHECK (status IN ('initial_sync', 'active', 'paused', 'auth_failed', 'removed'))
);

-- One row per (practice, resource); resource is the landed table's name.
CREATE TABLE sync_state (
    practice_id    TEXT    NOT NULL,
    resource       TEXT    NOT NULL,
    phase          TEXT    NOT NULL DEFAULT 'initial',
    watermark      TEXT,
    landed_count   INTEGER NOT NULL DEFAULT 0,
    expected_count INTEGER,
    last_error     TEXT,
    updated_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    CONSTRAINT sync_state_pkey PRIMARY KEY (practice_id, resource),
    CONSTRAINT sync_state_practice_fkey FOREIGN KEY (practice_id)
        REFERENCES practices (practice_id) ON DELETE CASCADE,
    CONSTRAINT sync_state_phase_check CHECK (phase IN ('initial', 'incremental'))
);

-- The initial sync of a resource, split into id ranges:
-- id_from is inclusive, id_to is exclusive ([id_from, id_to)).
-- after_id is the resume cursor: the last id of the last committed page.
CREATE TABLE sync_chunks (
    chunk_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    practice_id TEXT    NOT NULL,
    resource    TEXT    NOT NULL,
    id_from     INTEGER NOT NULL,
    id_to       INTEGER NOT NULL,
    priority    INTEGER NOT NULL DEFAULT 100,
    filter      TEXT    NOT NULL DEFAULT '',
    after_id    INTEGER,
    expected    INTEGER,
    landed      INTEGER NOT NULL DEFAULT 0,
    status      TEXT    NOT NULL DEFAULT 'pending',
    updated_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    CONSTRAINT sync_chunks_practice_fkey FOREIGN KEY (practice_id)
        REFERENCES practices (practice_id) ON DELETE CASCADE,
    CONSTRAINT sync_chunks_plan_key UNIQUE (practice_id, resource, id_from, id_to, filter),
    CONSTRAINT sync_chunks_range_check CHECK (id_from < id_to),
    CONSTRAINT sync_chunks_after_id_check
        CHECK (after_id IS NULL OR (after_id >= id_from AND after_id < id_to)),
    CONSTRAINT sync_chunks_counts_check
        CHECK (landed >= 0 AND (expected IS NULL OR expected >= 0)),
    CONSTRAINT sync_chunks_status_check CHECK (status IN ('pending', 'done'))
);

-- "The pending chunks of a practice, by priority".
CREATE INDEX sync_chunks_pending_idx
    ON sync_chunks (practice_id, priority, chunk_id)
    WHERE status = 'pending';

-- Practices, per-resource sync state and the initial-sync chunk plan.
-- Timestamps are written by the store (UTC, microseconds); the defaults
-- serve manual inserts only.

CREATE TABLE practices (
    practice_id           text        NOT NULL,
    organization_id       text        NOT NULL,
    location_id           bigint      NOT NULL,
    api_base              text        NOT NULL,
    sync_interval_minutes smallint    NOT NULL DEFAULT 15,
    status                text        NOT NULL DEFAULT 'initial_sync',
    status_detail         text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    last_success_at       timestamptz,
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
    practice_id    text        NOT NULL,
    resource       text        NOT NULL,
    phase          text        NOT NULL DEFAULT 'initial',
    watermark      timestamptz,
    landed_count   bigint      NOT NULL DEFAULT 0,
    expected_count bigint,
    last_error     text,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sync_state_pkey PRIMARY KEY (practice_id, resource),
    CONSTRAINT sync_state_practice_fkey FOREIGN KEY (practice_id)
        REFERENCES practices (practice_id) ON DELETE CASCADE,
    CONSTRAINT sync_state_phase_check CHECK (phase IN ('initial', 'incremental'))
);

-- The initial sync of a resource, split into id ranges:
-- id_from is inclusive, id_to is exclusive ([id_from, id_to)).
-- after_id is the resume cursor: the last id of the last committed page.
CREATE TABLE sync_chunks (
    chunk_id    bigserial   NOT NULL,
    practice_id text        NOT NULL,
    resource    text        NOT NULL,
    id_from     bigint      NOT NULL,
    id_to       bigint      NOT NULL,
    priority    smallint    NOT NULL DEFAULT 100,
    filter      text        NOT NULL DEFAULT '',
    after_id    bigint,
    expected    bigint,
    landed      bigint      NOT NULL DEFAULT 0,
    status      text        NOT NULL DEFAULT 'pending',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sync_chunks_pkey PRIMARY KEY (chunk_id),
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

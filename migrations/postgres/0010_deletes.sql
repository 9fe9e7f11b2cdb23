-- Deletes (issue 13). Ascend has no deleted-records feed: a deleted record
-- stops being listed. Workers find such records by reconciling ids during
-- sync and record them here at once, without touching the landed row; the
-- nightly role applies them in each practice's processing window.
--
-- captured_deletes: one row per landed record that Ascend no longer lists
-- for the practice (pending: not yet applied). A record seen again (landed
-- from a page, or listed by a reconciliation) before it is applied leaves
-- this table in that same transaction.
--   how: what found it: 'hot_window' (the reconciliation of the hot window
--   every cycle), 'daily' (the reconciliation of a whole resource, at least
--   once a day) or 'left_scope' (the record still exists in the
--   organization but no longer at this practice's location).
CREATE TABLE captured_deletes (
    practice_id text        NOT NULL,
    resource    text        NOT NULL,
    record_id   bigint      NOT NULL,
    detected_at timestamptz NOT NULL,
    how         text        NOT NULL,
    CONSTRAINT captured_deletes_pkey PRIMARY KEY (practice_id, resource, record_id),
    CONSTRAINT captured_deletes_practice_fkey FOREIGN KEY (practice_id)
        REFERENCES practices (practice_id) ON DELETE CASCADE,
    CONSTRAINT captured_deletes_how_check CHECK (how IN ('hot_window', 'daily', 'left_scope'))
);

-- deleted_records: the last version of every applied delete (raw JSON
-- included), with when it was captured and applied, for audit and
-- recovery; kept for the nightly role's retention. raw is patient data.
CREATE TABLE deleted_records (
    practice_id   text        NOT NULL,
    resource      text        NOT NULL,
    record_id     bigint      NOT NULL,
    last_modified timestamptz,
    raw           jsonb       NOT NULL,
    detected_at   timestamptz NOT NULL,
    how           text        NOT NULL,
    applied_at    timestamptz NOT NULL,
    CONSTRAINT deleted_records_pkey PRIMARY KEY (practice_id, resource, record_id)
);
CREATE INDEX deleted_records_applied_at_idx ON deleted_records (applied_at);

-- reconciled_at: when the whole resource was last reconciled for the
-- practice (every resource at least once a day).
ALTER TABLE sync_state ADD COLUMN reconciled_at timestamptz;

-- One pull per organization, and completeness a practice can see (issue 14).
--
-- Completeness: what the last whole reconciliation of a resource counted
-- for the practice. ascend_count is Ascend's meta.pagination.total for the
-- practice's scope (no window), held_count ours at the same moment (landed
-- rows without a pending captured delete), counted_at when. complete_at is
-- the last time the two were equal; mismatch_since the first count of the
-- mismatch under way (NULL when there is none) and mismatches how many
-- reconciliations in a row have found it. A mismatch found by two
-- reconciliations in a row makes the practice stale.
ALTER TABLE sync_state ADD COLUMN ascend_count bigint;
ALTER TABLE sync_state ADD COLUMN held_count bigint;
ALTER TABLE sync_state ADD COLUMN counted_at timestamptz;
ALTER TABLE sync_state ADD COLUMN complete_at timestamptz;
ALTER TABLE sync_state ADD COLUMN mismatch_since timestamptz;
ALTER TABLE sync_state ADD COLUMN mismatches bigint NOT NULL DEFAULT 0
    CONSTRAINT sync_state_mismatches_check CHECK (mismatches >= 0);

-- One pull per organization: passed_at is when the last incremental pass
-- that ran to its last page began (what decides whether an
-- organization-wide resource is due again this cycle); shared_from the
-- practice whose pull an organization-wide resource's rows were copied
-- from last (NULL: pulled by this practice itself).
ALTER TABLE sync_state ADD COLUMN passed_at timestamptz;
ALTER TABLE sync_state ADD COLUMN shared_from text;

-- "The practices of an organization".
CREATE INDEX practices_organization_idx ON practices (organization_id);

-- The fleet's request budget per organization (issue 12). Every worker
-- process draws from the organization's one row, a slice of requests per
-- claim (a short row lock per slice, never per call). See
-- sync_core::budget for the rules.
--
-- rate: requests per second the fleet paces to now (lowered on 429, grown
--   back slowly to limit).
-- limit_rps: what rate grows back to, as of the last claim: configured_rps,
--   or the fleet's default.
-- configured_rps: the organization's own setting (NULL: the default).
-- next_at: the next free send slot; paused_until: a Retry-After.
CREATE TABLE org_budgets (
    organization_id text PRIMARY KEY,
    rate double precision NOT NULL,
    limit_rps double precision NOT NULL,
    configured_rps double precision,
    next_at timestamptz NOT NULL,
    paused_until timestamptz,
    decreased_at timestamptz,
    adjusted_at timestamptz NOT NULL,
    granted bigint NOT NULL DEFAULT 0,
    throttled bigint NOT NULL DEFAULT 0
);

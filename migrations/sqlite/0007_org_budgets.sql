-- The fleet's request budget per organization (issue 12). See the
-- Postgres migration of the same number for what each column means.
CREATE TABLE org_budgets (
    organization_id TEXT PRIMARY KEY,
    rate REAL NOT NULL,
    limit_rps REAL NOT NULL,
    configured_rps REAL,
    next_at TEXT NOT NULL,
    paused_until TEXT,
    decreased_at TEXT,
    adjusted_at TEXT NOT NULL,
    granted INTEGER NOT NULL DEFAULT 0,
    throttled INTEGER NOT NULL DEFAULT 0
);

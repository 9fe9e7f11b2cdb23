-- Quarantine instead of stalls (issue 12).
--
-- quarantine: records that could not be read (no id, an id that is not a
-- number or is beyond the contract's range, an unreadable lastModified) or
-- could not be landed (the database refused the row, e.g. jsonb refusing a
-- lone surrogate escape). The rest of their page lands and the cursor or
-- watermark moves on as if the page were clean; each such record waits here
-- whole and is tried again every cycle. It leaves when it lands: a valid
-- version of it in a later page, or a retry of its raw text that succeeds.
--
-- record_key: the record's id in decimal when its id is a number (one row per
-- record; a later version replaces the earlier), else 'sha256:' and the hex
-- SHA-256 of its raw text (no id, or one that is not a number).
-- record_id: the id as sent, when it could be read at all.
-- raw: the record's JSON text, minified, otherwise exactly as received (text,
-- not jsonb: jsonb may be what refused it).
-- PHI: raw, and reason (which may quote the record), are patient data like
-- the landed rows' raw; they are never logged.
CREATE TABLE quarantine (
    practice_id   text        NOT NULL,
    resource      text        NOT NULL,
    record_key    text        NOT NULL,
    record_id     text,
    raw           text        NOT NULL,
    reason        text        NOT NULL,
    first_seen_at timestamptz NOT NULL,
    last_tried_at timestamptz NOT NULL,
    attempts      bigint      NOT NULL DEFAULT 1,
    CONSTRAINT quarantine_pkey PRIMARY KEY (practice_id, resource, record_key),
    CONSTRAINT quarantine_practice_fkey FOREIGN KEY (practice_id)
        REFERENCES practices (practice_id) ON DELETE CASCADE,
    CONSTRAINT quarantine_attempts_check CHECK (attempts >= 1)
);

-- failing_since: since when a resource has failed without a success in
-- between (set with last_error when it was NULL, cleared with it). status
-- reports a practice stale when a resource (one that is offered) has failed
-- for longer than the practice's staleness bound, even while its other
-- resources succeed.
ALTER TABLE sync_state ADD COLUMN failing_since timestamptz;

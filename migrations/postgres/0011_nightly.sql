-- The nightly role (issue 13): each practice's processing window, and one
-- record per practice per nightly pass.
--
-- time_zone: the practice's own time zone setting (an IANA name such as
-- America/Chicago), used when its location record gives none; NULL: none
-- (UTC then). nightly_start_minute / nightly_end_minute: the window in
-- minutes after local midnight, [start, end); an end before the start
-- crosses midnight. 60 and 300: 01:00 to 05:00.
ALTER TABLE practices ADD COLUMN time_zone text;
ALTER TABLE practices ADD COLUMN nightly_start_minute smallint NOT NULL DEFAULT 60
    CONSTRAINT practices_nightly_start_check CHECK (nightly_start_minute BETWEEN 0 AND 1439);
ALTER TABLE practices ADD COLUMN nightly_end_minute smallint NOT NULL DEFAULT 300
    CONSTRAINT practices_nightly_end_check CHECK (nightly_end_minute BETWEEN 0 AND 1439);

-- nightly_passes: one row per practice a nightly pass acted on: what it
-- confirmed with Ascend (checked), removed (applied) and found still
-- there (cancelled), or why it failed. No foreign key to practices: the
-- history outlives the practice. status: running, succeeded, partial (cut
-- short by --max-batches or a shutdown), failed, interrupted (the process
-- died; its batches were whole or not at all, the next pass goes on).
-- trigger: window (the practice's window was open) or operator
-- (--ignore-window).
CREATE TABLE nightly_passes (
    pass_id       text        NOT NULL,
    practice_id   text        NOT NULL,
    trigger       text        NOT NULL,
    started_at    timestamptz NOT NULL,
    ended_at      timestamptz,
    status        text        NOT NULL,
    checked       bigint      NOT NULL DEFAULT 0,
    applied       bigint      NOT NULL DEFAULT 0,
    cancelled     bigint      NOT NULL DEFAULT 0,
    api_calls     bigint      NOT NULL DEFAULT 0,
    error_class   text,
    error_message text,
    CONSTRAINT nightly_passes_pkey PRIMARY KEY (pass_id, practice_id),
    CONSTRAINT nightly_passes_status_check CHECK (status IN
        ('running', 'succeeded', 'partial', 'failed', 'interrupted')),
    CONSTRAINT nightly_passes_trigger_check CHECK (trigger IN ('window', 'operator'))
);
CREATE INDEX nightly_passes_practice_idx ON nightly_passes (practice_id, started_at);
CREATE INDEX nightly_passes_started_idx ON nightly_passes (started_at);

-- Write-back (issue 15): what a practice allows the platform to write into
-- its Ascend, and the outbox that carries each request exactly once.
--
-- writeback_types: one row per practice and type that was ever switched;
-- a type without a row is off. enabled_at is when it was last turned on:
-- only items submitted at or after it are sent. Every change is also in
-- audit_log (who, when, old and new value), in the same transaction.
CREATE TABLE writeback_types (
    practice_id text        NOT NULL,
    kind        text        NOT NULL,
    enabled     boolean     NOT NULL,
    enabled_at  timestamptz,
    changed_at  timestamptz NOT NULL,
    changed_by  text        NOT NULL,
    CONSTRAINT writeback_types_pkey PRIMARY KEY (practice_id, kind),
    CONSTRAINT writeback_types_kind_check CHECK (kind IN ('sms_log', 'email_log',
        'call_log', 'confirmation', 'document', 'new_patient', 'new_appointment'))
);

-- writeback_practices: the provider SMS notes are attributed to, and the
-- scheduler's claim (a write-back job queued or running for the practice:
-- claim_job_id until claim_until), so one tick enqueues one job.
CREATE TABLE writeback_practices (
    practice_id      text        NOT NULL,
    note_provider_id bigint,
    claim_job_id     text,
    claim_until      timestamptz,
    CONSTRAINT writeback_practices_pkey PRIMARY KEY (practice_id)
);

-- writeback_outbox: one row per request. (practice_id, idempotency_key)
-- is unique: a second submit with a key stores nothing. marker is what
-- the created record carries in Ascend (asy- and 16 hex digits of the
-- SHA-256 of practice and key), so a send whose answer was lost is found
-- instead of repeated. body is the checked request (the JSON of a
-- model::Write). status 'sending' means a send began and its outcome is
-- not known: the next attempt looks in Ascend first.
CREATE TABLE writeback_outbox (
    item_id         bigserial   NOT NULL,
    practice_id     text        NOT NULL,
    kind            text        NOT NULL,
    idempotency_key text        NOT NULL,
    marker          text        NOT NULL,
    body            text        NOT NULL,
    status          text        NOT NULL,
    reason          text,
    attempts        bigint      NOT NULL DEFAULT 0,
    submitted_at    timestamptz NOT NULL,
    submitted_by    text        NOT NULL,
    first_sent_at   timestamptz,
    next_attempt_at timestamptz,
    sent_at         timestamptz,
    ascend_id       bigint,
    found           boolean     NOT NULL DEFAULT false,
    updated_at      timestamptz NOT NULL,
    CONSTRAINT writeback_outbox_pkey PRIMARY KEY (item_id),
    CONSTRAINT writeback_outbox_key UNIQUE (practice_id, idempotency_key),
    CONSTRAINT writeback_outbox_kind_check CHECK (kind IN ('sms_log', 'email_log',
        'call_log', 'confirmation', 'document', 'new_patient', 'new_appointment')),
    CONSTRAINT writeback_outbox_status_check CHECK (status IN ('pending', 'blocked',
        'sending', 'sent', 'failed', 'dead')),
    CONSTRAINT writeback_outbox_attempts_check CHECK (attempts >= 0)
);

-- "What is due to be sent" (the scheduler and the job).
CREATE INDEX writeback_outbox_due_idx ON writeback_outbox (practice_id, next_attempt_at)
    WHERE status IN ('pending', 'failed', 'sending');

-- The job rules of the decision core (issue 11).
--
-- credential_version: raised each time a practice's credentials are
-- connected or rotated. A job remembers the version it opened; its auth
-- failure marks the practice auth_failed only while that version is still
-- the practice's, so a job that opened the old secret never undoes a
-- rotation.
ALTER TABLE practices ADD COLUMN credential_version bigint NOT NULL DEFAULT 0;

-- queued_at: when a job for this pending chunk was last sent. A re-plan
-- enqueues only chunks that are not queued or running; the chunk job's end
-- (done, given up, or an auth failure) clears it.
ALTER TABLE sync_chunks ADD COLUMN queued_at timestamptz;

-- not_offered_since: the organization answered 404 for this resource when
-- its initial sync was planned. It stays unplanned, with no watermark, and
-- does not hold the initial sync back; incremental cycles ask it again, and
-- its first answer pulls its whole history (issue 12: no silent gap).
ALTER TABLE sync_state ADD COLUMN not_offered_since timestamptz;

-- claimed_at_once: the current claim took a practice that a person had made
-- due now (connected, enabled, rotated: next_sync_at NULL); its job goes
-- without the scheduler's spread delay (issue 12).
ALTER TABLE practices ADD COLUMN claimed_at_once boolean NOT NULL DEFAULT false;

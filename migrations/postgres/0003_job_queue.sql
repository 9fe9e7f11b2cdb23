-- The job queue of the embedded / database mode (crate `queue`, DbQueue):
-- the same semantics as the SQS queues (two lanes, visibility timeout,
-- receive count, dead letters), in one table.
--
-- A message is ready when dead_at IS NULL AND visible_at <= now; in flight
-- (or delayed, receipt IS NULL) when visible_at > now; a dead letter when
-- dead_at IS NOT NULL. receipt is regenerated at each receive, so a worker
-- holding an older receipt cannot delete, extend or dead-letter a message
-- that was delivered again since.
-- lane orders the receive: 'priority' sorts before 'standard'.
CREATE TABLE job_queue (
    message_id        text        NOT NULL,
    lane              text        NOT NULL,
    body              text        NOT NULL,
    enqueued_at       timestamptz NOT NULL,
    visible_at        timestamptz NOT NULL,
    receive_count     bigint      NOT NULL DEFAULT 0,
    receipt           text,
    first_received_at timestamptz,
    dead_at           timestamptz,
    dead_reason       text,
    CONSTRAINT job_queue_pkey PRIMARY KEY (message_id),
    CONSTRAINT job_queue_lane_check CHECK (lane IN ('priority', 'standard')),
    CONSTRAINT job_queue_receive_count_check CHECK (receive_count >= 0),
    CONSTRAINT job_queue_reason_check CHECK (dead_reason IS NULL OR dead_at IS NOT NULL)
);

-- "The next ready messages, Priority lane first" (receive) and the depth.
CREATE INDEX job_queue_ready_idx
    ON job_queue (lane, visible_at, message_id)
    WHERE dead_at IS NULL;

-- "The dead letters, oldest first" (listing, redrive, depth).
CREATE INDEX job_queue_dead_idx
    ON job_queue (dead_at, message_id)
    WHERE dead_at IS NOT NULL;

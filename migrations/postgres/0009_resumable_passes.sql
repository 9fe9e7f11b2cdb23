-- A resumable incremental pass (issue 12). An incremental pass pages a
-- resource by id over everything changed since its watermark; each page
-- it lands records how far it got, in the page's transaction, so an
-- attempt that stops (a job timeout after weeks of backlog, a killed
-- worker) is continued by the next one instead of started again.
--
-- pass_started_at: when the pass began (the watermark it will set is
--   bounded by this, so records changed during a long pass are asked for
--   again by the next one).
-- pass_after_id: the largest id the pass has landed.
-- pass_max_seen: the largest lastModified the pass has seen.
-- All three are cleared by the pass's last page, with the watermark.
ALTER TABLE sync_state ADD COLUMN pass_started_at timestamptz;
ALTER TABLE sync_state ADD COLUMN pass_after_id bigint;
ALTER TABLE sync_state ADD COLUMN pass_max_seen timestamptz;

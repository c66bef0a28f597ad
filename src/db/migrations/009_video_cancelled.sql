-- Issue 9.6: POST /videos/:id/cancel stops a video where it is. 'cancelled' is final like 'completed'
-- and 'failed': the frames recorded before it stay, and no worker or extraction writes to it again.
ALTER TABLE videos DROP CONSTRAINT videos_status_check;
ALTER TABLE videos ADD CONSTRAINT videos_status_check
  CHECK (status IN ('queued', 'extracting', 'processing', 'completed', 'failed', 'cancelled'));
-- The partial index serves the recovery poller's scan of unfinished videos; a cancelled one is finished.
DROP INDEX videos_status_idx;
CREATE INDEX videos_status_idx ON videos (status) WHERE status NOT IN ('completed', 'failed', 'cancelled');

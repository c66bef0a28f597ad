-- A frame that could not be processed (corrupt image, or its job dead-lettered) is recorded with the
-- reason, so a video still finishes and says which frames are missing. A later successful run of the
-- same frame (a dead letter retried) replaces the failure.
ALTER TABLE frames ADD COLUMN error text;

ALTER TABLE videos ADD COLUMN frames_failed integer NOT NULL DEFAULT 0;
ALTER TABLE videos DROP CONSTRAINT videos_check;
ALTER TABLE videos ADD CONSTRAINT videos_frame_counts_check
  CHECK (frames_done >= 0 AND frames_failed >= 0 AND (frames_total IS NULL OR frames_done + frames_failed <= frames_total));

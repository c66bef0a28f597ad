-- A video's start offset (and its duration) in milliseconds can exceed an integer's 2^31 - 1 (24.8 days):
-- a crafted or long-running stream's start_time made the insert fail with 22003 (numeric out of range).
-- The videos table is small, so rewriting it once is cheap. Frame times (frames.pts_ms, detections.pts_ms)
-- are measured from the first frame and stay below MAX_DURATION_S, which config caps at 2,000,000 s.
ALTER TABLE videos
  ALTER COLUMN duration_ms TYPE bigint,
  ALTER COLUMN start_time_ms TYPE bigint;

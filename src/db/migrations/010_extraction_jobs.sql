-- Extraction is a queued job taken by workers (WORKER_ROLES=extract): a worker that dies has its job
-- reclaimed by the queue like any other, so the PostgreSQL lease that let another API process take
-- over a stalled extraction goes. frames_published is the extraction's checkpoint: frames below it are
-- stored and their detection jobs published, so a resumed extraction skips them.
ALTER TABLE videos DROP COLUMN IF EXISTS extraction_heartbeat_at;
ALTER TABLE videos ADD COLUMN frames_published integer NOT NULL DEFAULT 0;

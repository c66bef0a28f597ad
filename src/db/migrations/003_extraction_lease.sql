-- Extraction runs in an API process. While it runs, that process renews extraction_heartbeat_at; a
-- video left 'queued' or 'extracting' with an old heartbeat (its API process died) is claimed by
-- another API process and extracted again, so an accepted upload is never stranded.
ALTER TABLE videos ADD COLUMN start_time_ms integer NOT NULL DEFAULT 0; -- the video stream's start_time, for frame timestamps
ALTER TABLE videos ADD COLUMN extraction_heartbeat_at timestamptz;

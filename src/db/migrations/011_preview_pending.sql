-- The preview is written after extraction, while (and after) the frames are detected, so a finished video
-- may still be waiting for it. preview_pending: extraction is over and its preview is being made; false
-- once it is stored (preview_key set) or given up (no preview for good), and for videos from before.
ALTER TABLE videos ADD COLUMN preview_pending boolean NOT NULL DEFAULT false;

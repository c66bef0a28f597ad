-- The browser-playable preview written at extraction (PreviewService): its storage key and MIME type.
-- Both NULL while there is none (not written yet, turned off, or it failed: the video itself is unaffected).
ALTER TABLE videos
  ADD COLUMN preview_key text,
  ADD COLUMN preview_mime_type text,
  ADD CONSTRAINT videos_preview_complete CHECK ((preview_key IS NULL) = (preview_mime_type IS NULL));

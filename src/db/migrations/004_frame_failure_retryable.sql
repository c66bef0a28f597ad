-- A frame's failure is either for good (it would not decode: reading it again gives the same) or
-- retryable (its job was dead-lettered, e.g. storage was unreachable). A redelivered job skips frames
-- failed for good, which a KEEP_FRAMES=false commit has already deleted; a retried dead letter
-- processes its retryable ones again.
ALTER TABLE frames ADD COLUMN retryable boolean NOT NULL DEFAULT false;
-- Rows recorded before this column: a corrupt frame's reason starts with 'corrupt frame:'.
UPDATE frames SET retryable = true WHERE error IS NOT NULL AND error NOT LIKE 'corrupt frame:%';

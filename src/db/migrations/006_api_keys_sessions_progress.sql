-- Issue 10: API keys with scopes, web sessions, video ownership, progress for ETAs, per-class counts.

-- A key is stored as the sha256 of its text, never the text itself (it is shown once, at creation).
-- Keys are revoked, never deleted: the videos they uploaded keep pointing at them.
CREATE TABLE api_keys (
  id            uuid PRIMARY KEY,
  name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  key_hash      bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
  scopes        text[] NOT NULL CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['upload', 'read', 'admin']),
  -- environment: API_KEY (one row, updated in place when the variable changes, so its videos stay its own);
  -- bootstrap: made by the first start without any key; api: POST /admin/keys; cli: npm run key.
  source        text NOT NULL CHECK (source IN ('environment', 'bootstrap', 'api', 'cli')),
  created_at    timestamptz NOT NULL DEFAULT now(),
  last_used_at  timestamptz,
  revoked_at    timestamptz
);
CREATE UNIQUE INDEX api_keys_one_environment_key ON api_keys (source) WHERE source = 'environment';

-- Web sessions: the cookie holds a random token, the table its sha256. Sign-out deletes the row;
-- revoking the key ends its sessions too (they are looked up joined to an unrevoked key).
CREATE TABLE sessions (
  token_hash  bytea PRIMARY KEY CHECK (length(token_hash) = 32),
  key_id      uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL
);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);

-- The key that uploaded a video. Videos from before keys existed have none: only admin keys see them.
ALTER TABLE videos ADD COLUMN owner_key_id uuid REFERENCES api_keys (id);
-- GET /videos: newest first, a key's own videos or (admin) all of them.
CREATE INDEX videos_owner_created_idx ON videos (owner_key_id, created_at DESC, id DESC);
CREATE INDEX videos_created_idx ON videos (created_at DESC, id DESC);

-- The observed frame rate of a video, for its ETA: frames settled after the first commit, over the
-- time from the first commit to the latest (set by commitFrames).
ALTER TABLE videos
  ADD COLUMN first_commit_at timestamptz,
  ADD COLUMN first_commit_frames integer,
  ADD COLUMN last_commit_at timestamptz;

-- Detections per class of each video, kept by commitFrames in the same transaction as the detections,
-- so a video's top classes are read without counting its detections.
CREATE TABLE video_class_counts (
  video_id    uuid NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
  class_name  text NOT NULL,
  detections  integer NOT NULL CHECK (detections >= 0),
  PRIMARY KEY (video_id, class_name)
);
INSERT INTO video_class_counts (video_id, class_name, detections)
  SELECT video_id, class_name, count(*) FROM detections GROUP BY video_id, class_name;

-- Videos, the frames processed from them, and one row per detected box.

CREATE TABLE videos (
  id             uuid PRIMARY KEY,
  status         text NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'extracting', 'processing', 'completed', 'failed')),
  original_name  text NOT NULL,
  size_bytes     bigint NOT NULL CHECK (size_bytes >= 0),
  storage_key    text NOT NULL,
  sample_fps     real CHECK (sample_fps IS NULL OR sample_fps > 0), -- NULL: every frame
  duration_ms    integer,
  source_fps     real,
  width          integer NOT NULL,
  height         integer NOT NULL,
  codec          text NOT NULL,
  creation_time  timestamptz,
  captured_at    timestamptz NOT NULL, -- wall-clock time of the first frame
  probe          jsonb,                -- ffprobe's format and video stream, for questions the columns do not answer
  frames_total   integer CHECK (frames_total IS NULL OR frames_total >= 0),
  frames_done    integer NOT NULL DEFAULT 0,
  error          text,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  completed_at   timestamptz,
  CHECK (frames_done >= 0 AND (frames_total IS NULL OR frames_done <= frames_total))
);
CREATE INDEX videos_status_idx ON videos (status) WHERE status NOT IN ('completed', 'failed');

-- One row per processed frame: the primary key is what makes a redelivered job add nothing.
CREATE TABLE frames (
  video_id         uuid NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
  frame_index      integer NOT NULL CHECK (frame_index >= 0),
  pts_ms           integer NOT NULL,
  captured_at      timestamptz NOT NULL,
  detection_count  integer NOT NULL,
  PRIMARY KEY (video_id, frame_index)
);

CREATE TABLE detections (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  video_id     uuid NOT NULL,
  frame_index  integer NOT NULL,
  pts_ms       integer NOT NULL,
  captured_at  timestamptz NOT NULL, -- the video's captured_at plus the frame's offset
  class_id     smallint NOT NULL,
  class_name   text NOT NULL,
  confidence   real NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
  x1 real NOT NULL, y1 real NOT NULL, x2 real NOT NULL, y2 real NOT NULL,
  FOREIGN KEY (video_id, frame_index) REFERENCES frames (video_id, frame_index) ON DELETE CASCADE
);
-- "How many cars in the last hour": a range scan per class, and across classes.
CREATE INDEX detections_class_time_idx ON detections (class_name, captured_at);
CREATE INDEX detections_time_idx ON detections (captured_at);
CREATE INDEX detections_video_frame_idx ON detections (video_id, frame_index);

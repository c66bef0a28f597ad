import type { Sql } from './client.ts';
import type { DetectionQuery, DetectionRepository, FrameDetectionsPage, FrameResult } from './types.ts';
import { settleVideo } from './videos.repository.ts';

interface DetectionRow {
  frame_index: number;
  class_id: number;
  class_name: string;
  confidence: number;
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

export class PgDetectionRepository implements DetectionRepository {
  constructor(private readonly sql: Sql) {}

  async commitFrames(videoId: string, capturedAt: Date, frames: FrameResult[]): Promise<number> {
    if (frames.length === 0) return 0;
    return this.sql.begin(async (tx) => {
      // Lock the video row first: commits of one video serialise, and a cancel or delete (which need the
      // same lock) lands entirely before or after this commit. A deleted or cancelled video takes nothing,
      // nor one whose extraction failed; one that failed because all its frames failed does (a retried dead letter).
      const [video] = await tx<{ status: string; frames_total: number | null }[]>`SELECT status, frames_total FROM videos WHERE id = ${videoId} FOR UPDATE`;
      if (!video || video.status === 'cancelled' || (video.status === 'failed' && video.frames_total === null)) return 0;

      // Frames already recorded (a redelivered job) are skipped; only new frames get detections.
      // The one exception: a success replaces a recorded failure (a dead letter that was retried).
      const written = await tx<{ frame_index: number; outcome: 'done' | 'failed' | 'recovered' }[]>`
        INSERT INTO frames AS existing (video_id, frame_index, pts_ms, captured_at, detection_count, error, retryable)
        SELECT ${videoId}::uuid, f.frame_index, f.pts_ms, ${capturedAt}::timestamptz + f.pts_ms * interval '1 millisecond', f.detection_count, f.error,
               f.error IS NOT NULL AND f.retryable = 1
        FROM unnest(${frames.map((f) => f.frameIndex)}::int[], ${frames.map((f) => f.ptsMs)}::int[], ${frames.map((f) => f.detections.length)}::int[],
                    ${frames.map((f) => f.error ?? null)}::text[], ${frames.map((f) => (f.retryable === true ? 1 : 0))}::int[])
          AS f(frame_index, pts_ms, detection_count, error, retryable)
        ON CONFLICT (video_id, frame_index) DO UPDATE
          SET detection_count = excluded.detection_count, error = NULL, retryable = false
          WHERE existing.error IS NOT NULL AND excluded.error IS NULL
        RETURNING frame_index,
          CASE WHEN existing.xmax::text <> '0' THEN 'recovered' WHEN error IS NULL THEN 'done' ELSE 'failed' END AS outcome`;
      if (written.length === 0) return 0;
      const count = (outcome: string) => written.filter((row) => row.outcome === outcome).length;
      const doneDelta = count('done') + count('recovered');
      const failedDelta = count('failed') - count('recovered');
      const inserted = written.filter((row) => row.outcome !== 'failed');

      const fresh = new Set(inserted.map((row) => row.frame_index));
      const columns = { frameIndex: [] as number[], ptsMs: [] as number[], classId: [] as number[], className: [] as string[], confidence: [] as number[], x1: [] as number[], y1: [] as number[], x2: [] as number[], y2: [] as number[] };
      for (const frame of frames) {
        if (!fresh.has(frame.frameIndex)) continue;
        for (const d of frame.detections) {
          columns.frameIndex.push(frame.frameIndex);
          columns.ptsMs.push(frame.ptsMs);
          columns.classId.push(d.classId);
          columns.className.push(d.className);
          columns.confidence.push(d.confidence);
          columns.x1.push(d.box[0]);
          columns.y1.push(d.box[1]);
          columns.x2.push(d.box[2]);
          columns.y2.push(d.box[3]);
        }
      }
      if (columns.frameIndex.length > 0) {
        // unnest takes one array parameter per column, so a batch of any size binds 10 parameters,
        // far below PostgreSQL's 65,535 limit that a multi-row VALUES list hits at ~6,500 boxes,
        // and it is one round trip. captured_at is computed as for the frame rows.
        await tx`
          INSERT INTO detections (video_id, frame_index, pts_ms, captured_at, class_id, class_name, confidence, x1, y1, x2, y2)
          SELECT ${videoId}::uuid, d.frame_index, d.pts_ms, ${capturedAt}::timestamptz + d.pts_ms * interval '1 millisecond',
                 d.class_id, d.class_name, d.confidence, d.x1, d.y1, d.x2, d.y2
          FROM unnest(
            ${columns.frameIndex}::int[], ${columns.ptsMs}::int[],
            ${columns.classId}::smallint[], ${columns.className}::text[], ${columns.confidence}::real[],
            ${columns.x1}::real[], ${columns.y1}::real[], ${columns.x2}::real[], ${columns.y2}::real[])
            AS d(frame_index, pts_ms, class_id, class_name, confidence, x1, y1, x2, y2)`;
        // Per-class totals beside the rows, in the same transaction (commits of a video are serialised by its row lock).
        await tx`
          INSERT INTO video_class_counts AS counts (video_id, class_name, detections)
          SELECT ${videoId}::uuid, class_name, count(*) FROM unnest(${columns.className}::text[]) AS c(class_name) GROUP BY class_name
          ON CONFLICT (video_id, class_name) DO UPDATE SET detections = counts.detections + excluded.detections`;
      }
      // If frames_total is already known and these frames would exceed it, the CHECK constraint fails
      // and the whole commit rolls back.
      // first_commit_* and last_commit_at give the video's observed frame rate (its ETA; see services/progress.ts).
      await tx`
        UPDATE videos SET frames_done = frames_done + ${doneDelta}, frames_failed = frames_failed + ${failedDelta}, updated_at = now(),
          first_commit_at = coalesce(first_commit_at, now()),
          first_commit_frames = coalesce(first_commit_frames, frames_done + frames_failed + ${doneDelta + failedDelta}),
          last_commit_at = now()
        WHERE id = ${videoId}`;
      await settleVideo(tx, videoId);
      return written.length;
    });
  }

  async committedFrames(videoId: string, frameIndexes: number[]): Promise<Set<number>> {
    // Frames failed for good count as settled: reading them again gives the same failure, and a
    // KEEP_FRAMES=false commit has deleted them. Only retryable failures (a dead letter's) are worked on again.
    const rows = await this.sql<{ frame_index: number }[]>`
      SELECT frame_index FROM frames WHERE video_id = ${videoId} AND frame_index = ANY(${frameIndexes}::int[]) AND (error IS NULL OR NOT retryable)`;
    return new Set(rows.map((row) => row.frame_index));
  }

  async listFrames(query: DetectionQuery): Promise<FrameDetectionsPage> {
    const { videoId, limit } = query;
    const cursor = query.cursor ?? -1;
    const className = query.className ?? null;
    const minConfidence = query.minConfidence ?? 0;
    // With a class filter only frames that have a matching detection are listed.
    const frames = await this.sql<{ frame_index: number; pts_ms: number; error: string | null }[]>`
      SELECT f.frame_index, f.pts_ms, f.error FROM frames f
      WHERE f.video_id = ${videoId} AND f.frame_index > ${cursor}
        AND (${className}::text IS NULL OR EXISTS (
          SELECT 1 FROM detections d WHERE d.video_id = f.video_id AND d.frame_index = f.frame_index
            AND d.class_name = ${className} AND d.confidence >= ${minConfidence}))
      ORDER BY f.frame_index
      LIMIT ${limit + 1}`;
    const more = frames.length > limit;
    const page = more ? frames.slice(0, limit) : frames;
    if (page.length === 0) return { frames: [], nextCursor: null };

    const first = page[0]!.frame_index;
    const last = page.at(-1)!.frame_index;
    const rows = await this.sql<DetectionRow[]>`
      SELECT frame_index, class_id, class_name, confidence, x1, y1, x2, y2 FROM detections
      WHERE video_id = ${videoId} AND frame_index BETWEEN ${first} AND ${last}
        AND (${className}::text IS NULL OR class_name = ${className}) AND confidence >= ${minConfidence}
      ORDER BY frame_index, confidence DESC, id`;
    const byFrame = new Map<number, FrameResult>(page.map((f) => [f.frame_index, { frameIndex: f.frame_index, ptsMs: f.pts_ms, detections: [], ...(f.error === null ? {} : { error: f.error }) }]));
    for (const row of rows) {
      byFrame.get(row.frame_index)?.detections.push({
        classId: row.class_id,
        className: row.class_name,
        confidence: row.confidence,
        box: [row.x1, row.y1, row.x2, row.y2],
      });
    }
    return { frames: [...byFrame.values()], nextCursor: more ? last : null };
  }
}

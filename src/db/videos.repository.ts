import type postgres from 'postgres';
import type { Sql } from './client.ts';
import type { NewVideo, VideoPreview, VideoRecord, VideoRepository, VideoStatus } from './types.ts';

interface VideoRow {
  id: string;
  status: VideoStatus;
  original_name: string;
  /** bigint: a number while exactly representable (see client.ts). */
  size_bytes: number | string;
  storage_key: string;
  sample_fps: number | null;
  /** bigint since migration 005, like start_time_ms: a number while exactly representable (always, see probe.ts). */
  duration_ms: number | string | null;
  source_fps: number | null;
  width: number;
  height: number;
  codec: string;
  creation_time: Date | null;
  start_time_ms: number | string;
  captured_at: Date;
  frames_total: number | null;
  frames_done: number;
  frames_failed: number;
  error: string | null;
  created_at: Date;
  updated_at: Date;
  completed_at: Date | null;
  preview_key: string | null;
  preview_mime_type: string | null;
  preview_pending: boolean;
}

const columns = 'id, status, original_name, size_bytes, storage_key, sample_fps, duration_ms, source_fps, width, height, codec, creation_time, start_time_ms, captured_at, frames_total, frames_done, frames_failed, error, created_at, updated_at, completed_at, preview_key, preview_mime_type, preview_pending';

function toRecord(row: VideoRow): VideoRecord {
  return {
    id: row.id,
    status: row.status,
    originalName: row.original_name,
    sizeBytes: Number(row.size_bytes),
    storageKey: row.storage_key,
    sampleFps: row.sample_fps,
    source: {
      durationMs: row.duration_ms === null ? null : Number(row.duration_ms),
      fps: row.source_fps,
      width: row.width,
      height: row.height,
      codec: row.codec,
      creationTime: row.creation_time,
      startTimeMs: Number(row.start_time_ms),
    },
    capturedAt: row.captured_at,
    framesTotal: row.frames_total,
    framesDone: row.frames_done,
    framesFailed: row.frames_failed,
    error: row.error,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    completedAt: row.completed_at,
    preview: row.preview_key === null || row.preview_mime_type === null ? null : { key: row.preview_key, mimeType: row.preview_mime_type as VideoPreview['mimeType'] },
    previewPending: row.preview_pending,
  };
}

export class PgVideoRepository implements VideoRepository {
  constructor(private readonly sql: Sql) {}

  async create(video: NewVideo): Promise<VideoRecord> {
    const { source } = video;
    const [row] = await this.sql<VideoRow[]>`
      INSERT INTO videos (id, original_name, size_bytes, storage_key, sample_fps, duration_ms, source_fps, width, height, codec, creation_time, start_time_ms, captured_at, probe, owner_key_id)
      VALUES (${video.id}, ${video.originalName}, ${video.sizeBytes}, ${video.storageKey}, ${video.sampleFps}, ${source.durationMs === null ? null : Math.round(source.durationMs)},
              ${source.fps}, ${source.width}, ${source.height}, ${source.codec}, ${source.creationTime}, ${Math.round(source.startTimeMs)}, ${video.capturedAt}, ${this.sql.json(video.probe as never)},
              ${video.ownerKeyId ?? null})
      RETURNING ${this.sql.unsafe(columns)}`;
    return toRecord(row!);
  }

  async get(id: string): Promise<VideoRecord | undefined> {
    const [row] = await this.sql<VideoRow[]>`SELECT ${this.sql.unsafe(columns)} FROM videos WHERE id = ${id}`;
    return row ? toRecord(row) : undefined;
  }

  async startExtraction(id: string): Promise<number | undefined> {
    const [row] = await this.sql<{ frames_published: number }[]>`
      UPDATE videos SET status = 'extracting', updated_at = now()
      WHERE id = ${id} AND status IN ('queued', 'extracting')
      RETURNING frames_published`;
    return row?.frames_published;
  }

  async recordFramesPublished(id: string, frames: number): Promise<boolean> {
    const rows = await this.sql`UPDATE videos SET frames_published = greatest(frames_published, ${frames}) WHERE id = ${id} AND status = 'extracting' RETURNING id`;
    return rows.length === 1;
  }

  async listQueued(olderThanMs: number, after: { createdAt: Date; id: string } | undefined, limit: number): Promise<Array<{ id: string; createdAt: Date }>> {
    // Keyed on milliseconds: the cursor comes back as a JavaScript Date, which drops PostgreSQL's microseconds.
    const rows = await this.sql<{ id: string; created_at: Date }[]>`
      SELECT id, date_trunc('milliseconds', created_at) AS created_at FROM videos
      WHERE status = 'queued' AND created_at < now() - ${olderThanMs} * interval '1 millisecond'
        ${after ? this.sql`AND (date_trunc('milliseconds', created_at), id) > (${after.createdAt}::timestamptz, ${after.id}::uuid)` : this.sql``}
      ORDER BY date_trunc('milliseconds', created_at), id
      LIMIT ${limit}`;
    return rows.map((row) => ({ id: row.id, createdAt: row.created_at }));
  }

  async markExtracted(id: string, framesTotal: number, previewPending = false): Promise<VideoRecord> {
    // Under the row lock taken by the first UPDATE: a worker committing the last frame at the same
    // moment either commits first (and settling here finishes the video) or waits and finishes it.
    const row = await this.sql.begin(async (tx) => {
      const updated = await tx`
        UPDATE videos SET frames_total = ${framesTotal}, status = 'processing', completed_at = NULL, preview_pending = ${previewPending}, updated_at = now()
        WHERE id = ${id} AND status NOT IN ('failed', 'cancelled')
        RETURNING id`;
      if (updated.length === 0) return undefined;
      await settleVideo(tx, id);
      const [settled] = await tx<VideoRow[]>`SELECT ${tx.unsafe(columns)} FROM videos WHERE id = ${id}`;
      return settled;
    });
    if (row) return toRecord(row);
    const current = await this.get(id);
    if (!current) throw new Error(`video ${id} no longer exists`);
    return current;
  }

  async markFailed(id: string, error: string): Promise<boolean> {
    const rows = await this.sql`UPDATE videos SET status = 'failed', error = ${error}, updated_at = now() WHERE id = ${id} AND status IN ('queued', 'extracting') RETURNING id`;
    return rows.length === 1;
  }

  async cancel(id: string): Promise<VideoRecord | undefined> {
    // The UPDATE waits for the row lock a commitFrames in progress holds, and that commit re-reads
    // the status under its lock: results land entirely before the cancel or not at all.
    const [row] = await this.sql<VideoRow[]>`
      UPDATE videos SET status = 'cancelled', updated_at = now(), completed_at = now()
      WHERE id = ${id} AND status IN ('queued', 'extracting', 'processing')
      RETURNING ${this.sql.unsafe(columns)}`;
    return row ? toRecord(row) : this.get(id);
  }

  async isCancelled(id: string): Promise<boolean> {
    const [row] = await this.sql<{ status: VideoStatus }[]>`SELECT status FROM videos WHERE id = ${id}`;
    return !row || row.status === 'cancelled';
  }

  async setPreview(id: string, preview: VideoPreview | null): Promise<boolean> {
    const rows = await this.sql`UPDATE videos SET preview_key = ${preview?.key ?? null}, preview_mime_type = ${preview?.mimeType ?? null}, preview_pending = false, updated_at = now() WHERE id = ${id} RETURNING id`;
    return rows.length === 1;
  }

  async delete(id: string): Promise<void> {
    await this.sql`DELETE FROM videos WHERE id = ${id}`;
  }
}

/**
 * Once every frame is accounted for (frames_done + frames_failed reaches frames_total), sets the
 * outcome from the counts: 'failed' when frames failed and none succeeded, else 'completed'; error
 * says how many frames failed and the error of the last failed frame, and is cleared when none did.
 * Run in the transaction that changed the counts (it holds the row lock), so a retried dead letter
 * whose frames now succeed settles the video again. A video that failed before extraction ended
 * (frames_total unknown) is left alone, and so is a cancelled one.
 */
export async function settleVideo(tx: postgres.TransactionSql, id: string): Promise<void> {
  await tx`
    UPDATE videos SET
      status = CASE WHEN frames_done = 0 AND frames_failed > 0 THEN 'failed' ELSE 'completed' END,
      error = CASE WHEN frames_failed = 0 THEN NULL
                   ELSE frames_failed || ' of ' || frames_total || ' frames failed: ' || coalesce(
                     (SELECT f.error FROM frames f WHERE f.video_id = videos.id AND f.error IS NOT NULL ORDER BY f.frame_index DESC LIMIT 1),
                     'unknown error') END,
      completed_at = coalesce(completed_at, now()),
      updated_at = now()
    WHERE id = ${id} AND status <> 'cancelled' AND frames_total IS NOT NULL AND frames_done + frames_failed >= frames_total`;
}

// The read side of the web API (db/video-catalog.repository.ts) selects the same columns.
export { columns as videoColumns, toRecord as toVideoRecord, type VideoRow };

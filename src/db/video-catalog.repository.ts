import type { Sql } from './client.ts';
import type { VideoRecord, VideoStatus } from './types.ts';
import { toVideoRecord, videoColumns, type VideoRow } from './videos.repository.ts';

/** When frames were committed: the observed frame rate behind a video's ETA (see services/progress.ts). */
export interface CommitProgress {
  firstCommitAt: Date | null;
  /** Frames settled (done + failed) once the first commit was in. */
  firstCommitFrames: number | null;
  lastCommitAt: Date | null;
}

/** A video as the web API shows it: the pipeline's record plus its owner and commit progress. */
export interface CatalogVideo extends VideoRecord {
  ownerKeyId: string | null;
  progress: CommitProgress;
}

/** Where a page of GET /videos ends: (created_at, id) of its last video, created_at in epoch microseconds. */
export interface ListPosition {
  createdAtMicros: string;
  id: string;
}

export interface VideoListQuery {
  /** Only this key's videos; undefined: every video (admin). */
  ownerKeyId: string | undefined;
  status?: VideoStatus;
  limit: number;
  /** Videos strictly older than this position (the previous page's last). */
  after?: ListPosition;
}

export interface ClassCount {
  className: string;
  count: number;
}

/** The read side of the web API: videos with owner and progress, listed newest first. */
export interface VideoCatalog {
  get(id: string): Promise<CatalogVideo | undefined>;
  getMany(ids: string[]): Promise<CatalogVideo[]>;
  list(query: VideoListQuery): Promise<{ items: CatalogVideo[]; next: ListPosition | null }>;
  /** Up to `limit` classes per video with the most detections, most first. */
  topClasses(videoIds: string[], limit: number): Promise<Map<string, ClassCount[]>>;
}

interface CatalogRow extends VideoRow {
  owner_key_id: string | null;
  first_commit_at: Date | null;
  first_commit_frames: number | null;
  last_commit_at: Date | null;
  created_micros: string;
}

const catalogColumns = `${videoColumns}, owner_key_id, first_commit_at, first_commit_frames, last_commit_at,
  (extract(epoch FROM created_at) * 1000000)::bigint::text AS created_micros`;

function toCatalogVideo(row: CatalogRow): CatalogVideo {
  return {
    ...toVideoRecord(row),
    ownerKeyId: row.owner_key_id,
    progress: { firstCommitAt: row.first_commit_at, firstCommitFrames: row.first_commit_frames, lastCommitAt: row.last_commit_at },
  };
}

export class PgVideoCatalog implements VideoCatalog {
  constructor(private readonly sql: Sql) {}

  async get(id: string): Promise<CatalogVideo | undefined> {
    const [row] = await this.sql<CatalogRow[]>`SELECT ${this.sql.unsafe(catalogColumns)} FROM videos WHERE id = ${id}`;
    return row ? toCatalogVideo(row) : undefined;
  }

  async getMany(ids: string[]): Promise<CatalogVideo[]> {
    if (ids.length === 0) return [];
    const rows = await this.sql<CatalogRow[]>`SELECT ${this.sql.unsafe(catalogColumns)} FROM videos WHERE id = ANY(${ids}::uuid[])`;
    return rows.map(toCatalogVideo);
  }

  async list({ ownerKeyId, status, limit, after }: VideoListQuery): Promise<{ items: CatalogVideo[]; next: ListPosition | null }> {
    const sql = this.sql;
    // Separate statements per filter rather than `param IS NULL OR ...`, so each keeps an index plan
    // (videos_owner_created_idx for a key's own videos, videos_created_idx for all).
    const rows = await sql<CatalogRow[]>`
      SELECT ${sql.unsafe(catalogColumns)} FROM videos
      WHERE true
        ${ownerKeyId === undefined ? sql`` : sql`AND owner_key_id = ${ownerKeyId}`}
        ${status === undefined ? sql`` : sql`AND status = ${status}`}
        ${after === undefined ? sql`` : sql`AND (created_at, id) < ('epoch'::timestamptz + ${after.createdAtMicros}::bigint * interval '1 microsecond', ${after.id}::uuid)`}
      ORDER BY created_at DESC, id DESC
      LIMIT ${limit + 1}`;
    const more = rows.length > limit;
    const page = more ? rows.slice(0, limit) : rows;
    const last = page.at(-1);
    return { items: page.map(toCatalogVideo), next: more && last ? { createdAtMicros: last.created_micros, id: last.id } : null };
  }

  async topClasses(videoIds: string[], limit: number): Promise<Map<string, ClassCount[]>> {
    const top = new Map<string, ClassCount[]>(videoIds.map((id) => [id, []]));
    if (videoIds.length === 0) return top;
    const rows = await this.sql<{ video_id: string; class_name: string; detections: number }[]>`
      SELECT video_id, class_name, detections FROM (
        SELECT video_id, class_name, detections,
               row_number() OVER (PARTITION BY video_id ORDER BY detections DESC, class_name) AS rank
        FROM video_class_counts WHERE video_id = ANY(${videoIds}::uuid[]) AND detections > 0
      ) ranked
      WHERE rank <= ${limit}
      ORDER BY video_id, rank`;
    for (const row of rows) top.get(row.video_id)?.push({ className: row.class_name, count: row.detections });
    return top;
  }
}

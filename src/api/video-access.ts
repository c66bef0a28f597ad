import type { ClassCount, CatalogVideo, VideoCatalog } from '../db/video-catalog.repository.ts';
import { errors } from '../errors/app-error.ts';
import { isAdmin, type Principal } from '../services/auth.service.ts';
import { estimateEtaSeconds } from '../services/progress.ts';
import { UUID } from './params.ts';

/** Classes shown per video in `topClasses`. */
export const TOP_CLASSES = 5;

export interface VideoPreview {
  url: string;
  mimeType: 'video/mp4' | 'video/webm';
}

/**
 * The video if this principal may see it: an admin key sees every video, other keys the videos they
 * uploaded. Another key's video is 404, exactly like a missing one, so its existence is not revealed.
 */
export async function findVisibleVideo(catalog: Pick<VideoCatalog, 'get'>, id: string, principal: Principal): Promise<CatalogVideo> {
  const video = UUID.test(id) ? await catalog.get(id) : undefined;
  if (!video || !(isAdmin(principal) || video.ownerKeyId === principal.keyId)) throw errors.notFound(`video ${id}`);
  return video;
}

/** Whose videos a listing or an aggregate covers: undefined means all of them (admin). */
export function ownerFilter(principal: Principal): string | undefined {
  return isAdmin(principal) ? undefined : principal.keyId;
}

/** The browser-playable preview of a video (written after extraction by PreviewService), null while there is none. */
export function previewOf(video: CatalogVideo): VideoPreview | null {
  return video.preview ? { url: `/videos/${video.id}/preview`, mimeType: video.preview.mimeType } : null;
}

export function presentVideo(video: CatalogVideo, topClasses: ClassCount[], now: number) {
  return {
    id: video.id,
    status: video.status,
    originalName: video.originalName,
    sizeBytes: video.sizeBytes,
    sampleFps: video.sampleFps,
    framesTotal: video.framesTotal,
    framesDone: video.framesDone,
    framesFailed: video.framesFailed,
    etaSeconds: estimateEtaSeconds(video, now),
    source: {
      durationMs: video.source.durationMs,
      fps: video.source.fps,
      width: video.source.width,
      height: video.source.height,
      codec: video.source.codec,
      creationTime: video.source.creationTime,
    },
    capturedAt: video.capturedAt,
    createdAt: video.createdAt,
    updatedAt: video.updatedAt,
    completedAt: video.completedAt,
    error: video.error,
    topClasses,
    preview: previewOf(video),
    previewPending: video.previewPending,
  };
}

/** Videos as the API shows them, with their top classes read in one query. */
export async function presentVideos(catalog: Pick<VideoCatalog, 'topClasses'>, videos: CatalogVideo[]) {
  const top = await catalog.topClasses(videos.map((video) => video.id), TOP_CLASSES);
  const now = Date.now();
  return videos.map((video) => presentVideo(video, top.get(video.id) ?? [], now));
}

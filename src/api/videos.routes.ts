import { pipeline } from 'node:stream/promises';
import { Router, type RequestHandler } from 'express';
import type { DetectionRepository, VideoStatus } from '../db/types.ts';
import type { ListPosition, VideoCatalog } from '../db/video-catalog.repository.ts';
import { AppError, errors } from '../errors/app-error.ts';
import type { PipelineObserver } from '../metrics/observer.ts';
import type { UploadService } from '../services/upload.service.ts';
import type { VideoLifecycleService } from '../services/video-lifecycle.service.ts';
import type { VideoStorage } from '../storage/video-storage.ts';
import { principalOf, requireScope } from './auth.ts';
import { parseRange } from './byte-range.ts';
import { integerParam, numberParam, oneOfParam, stringParam, UUID } from './params.ts';
import { stagedUpload, uploadMiddleware } from './upload.ts';
import { findVisibleVideo, ownerFilter, presentVideos } from './video-access.ts';

const STATUSES: readonly VideoStatus[] = ['queued', 'extracting', 'processing', 'completed', 'failed', 'cancelled'];

export interface VideoRoutesDeps {
  uploads: UploadService;
  catalog: VideoCatalog;
  detections: DetectionRepository;
  storage: VideoStorage;
  maxUploadBytes: number;
  observer: Pick<PipelineObserver, 'uploadAccepted'>;
  /** Runs before the body is read: upload slots, free space, deadlines (see upload-admission.ts). */
  admission: RequestHandler;
  lifecycle: Pick<VideoLifecycleService, 'cancel' | 'delete'>;
}

export function videoRoutes({ uploads, catalog, detections, storage, maxUploadBytes, observer, admission, lifecycle }: VideoRoutesDeps): Router {
  const router = Router();

  // The scope is checked before multer reads the body: a key that may not upload sends nothing to storage,
  // and takes no upload slot.
  router.post('/videos', requireScope('upload'), admission, ...uploadMiddleware(uploads, maxUploadBytes), async (req, res) => {
    const staged = stagedUpload(req);
    if (!staged) throw errors.badRequest('missing_file', 'send the video as multipart/form-data in the field "video"');
    const body = (req.body ?? {}) as Record<string, unknown>;
    const fps = typeof body.fps === 'string' ? body.fps : undefined;
    if (body.fps !== undefined && fps === undefined) {
      await uploads.discardStaged(staged.videoId);
      throw errors.badRequest('invalid_fps', 'send fps once, as a plain form field');
    }
    const video = await uploads.acceptUpload(staged, fps, principalOf(res).keyId);
    observer.uploadAccepted(staged.sizeBytes);
    res.status(202).location(`/videos/${video.id}`).json({ id: video.id, status: video.status });
  });

  router.get('/videos', requireScope('read'), async (req, res) => {
    const query = req.query as Record<string, unknown>;
    const page = await catalog.list({
      ownerKeyId: ownerFilter(principalOf(res)),
      status: oneOfParam(query.status, 'status', STATUSES),
      limit: integerParam(query.limit, 'limit', { min: 1, max: 100 }) ?? 20,
      after: decodeCursor(stringParam(query.cursor, 'cursor')),
    });
    res.json({ items: await presentVideos(catalog, page.items), nextCursor: page.next ? encodeCursor(page.next) : null });
  });

  router.get('/videos/:id', requireScope<{ id: string }>('read'), async (req, res) => {
    const video = await findVisibleVideo(catalog, req.params.id, principalOf(res));
    const [presented] = await presentVideos(catalog, [video]);
    res.json(presented);
  });

  // Cancel and delete need the scope that uploads (or admin), and only the uploading key's own videos
  // (admin: any); another key's video is 404, as for reads.
  router.post('/videos/:id/cancel', requireScope<{ id: string }>('upload'), async (req, res) => {
    const video = await findVisibleVideo(catalog, videoIdParam(req.params.id), principalOf(res));
    const outcome = await lifecycle.cancel(video.id);
    const current = outcome && (await catalog.get(video.id));
    if (!current) throw errors.notFound(`video ${video.id}`); // deleted meanwhile
    const [presented] = await presentVideos(catalog, [current]);
    res.json(presented);
  });

  router.delete('/videos/:id', requireScope<{ id: string }>('upload'), async (req, res) => {
    const video = await findVisibleVideo(catalog, videoIdParam(req.params.id), principalOf(res));
    // undefined: a concurrent DELETE removed it first; this one then answers like any later one.
    if (!(await lifecycle.delete(video.id))) throw errors.notFound(`video ${video.id}`);
    res.status(204).end();
  });

  router.get('/videos/:id/detections', requireScope<{ id: string }>('read'), async (req, res) => {
    const video = await findVisibleVideo(catalog, req.params.id, principalOf(res));
    const query = req.query as Record<string, unknown>;
    const page = await detections.listFrames({
      videoId: video.id,
      limit: integerParam(query.limit, 'limit', { min: 1, max: 1000 }) ?? 100,
      cursor: integerParam(query.cursor, 'cursor', { min: -1, max: 2 ** 31 - 1 }) ?? null,
      className: stringParam(query.class, 'class'),
      minConfidence: numberParam(query.minConfidence, 'minConfidence', { min: 0, max: 1 }),
    });
    res.json(page);
  });

  // The browser-playable preview, with byte ranges: a <video> element asks for ranges to start and to seek.
  router.get('/videos/:id/preview', requireScope<{ id: string }>('read'), async (req, res) => {
    const video = await findVisibleVideo(catalog, req.params.id, principalOf(res));
    const size = video.preview ? await storage.size(video.preview.key) : undefined;
    if (!video.preview || size === undefined) throw errors.notFound(`preview of video ${video.id}`);
    const range = parseRange(req.headers.range, size);
    res.setHeader('Accept-Ranges', 'bytes');
    res.setHeader('Cache-Control', 'private, max-age=3600');
    if (range.kind === 'unsatisfiable') {
      res.setHeader('Content-Range', `bytes */${size}`);
      throw new AppError(416, 'range_not_satisfiable', `the Range header asks for no bytes of the preview's ${size}; send one range, bytes=start-end, within them`);
    }
    res.type(video.preview.mimeType);
    if (range.kind === 'partial') {
      res.status(206).setHeader('Content-Range', `bytes ${range.start}-${range.end}/${size}`);
      res.setHeader('Content-Length', range.end - range.start + 1);
    } else {
      res.setHeader('Content-Length', size);
    }
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const body = await storage.createReadStream(video.preview.key, range.kind === 'partial' ? range : undefined);
    try {
      await pipeline(body, res);
    } catch (error) {
      // Players drop ranges they no longer need, so a closed connection is routine; once the body has
      // started, an error can only cut the response short (pipeline has destroyed both streams).
      if (!res.headersSent) throw error;
    }
  });

  return router;
}

/** A video id in a path that changes state: anything but a UUID is a malformed request (400), not a missing video. */
function videoIdParam(id: string): string {
  if (!UUID.test(id)) throw errors.badRequest('invalid_id', 'the video id must be a UUID, as returned by POST /videos');
  return id.toLowerCase();
}

/** Opaque to clients: base64url of "<created_at in epoch microseconds>.<id>" of the page's last video. */
function encodeCursor(position: ListPosition): string {
  return Buffer.from(`${position.createdAtMicros}.${position.id}`).toString('base64url');
}

function decodeCursor(cursor: string | undefined): ListPosition | undefined {
  if (cursor === undefined) return undefined;
  const [micros, id] = Buffer.from(cursor, 'base64url').toString('utf8').split('.');
  if (micros === undefined || id === undefined || !/^\d{1,19}$/.test(micros) || !UUID.test(id)) {
    throw errors.badRequest('invalid_query', 'cursor must be a nextCursor from an earlier page');
  }
  return { createdAtMicros: micros, id };
}

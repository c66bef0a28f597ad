import { pipeline } from 'node:stream/promises';
import { Router } from 'express';
import type { DetectionRepository, VideoRecord, VideoRepository } from '../db/types.ts';
import { AppError, errors } from '../errors/app-error.ts';
import type { UploadService } from '../services/upload.service.ts';
import type { VideoStorage } from '../storage/video-storage.ts';
import { parseRange } from './byte-range.ts';
import { stagedUpload, uploadMiddleware } from './upload.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface VideoRoutesDeps {
  uploads: UploadService;
  videos: VideoRepository;
  detections: DetectionRepository;
  storage: VideoStorage;
  maxUploadBytes: number;
}

export function videoRoutes({ uploads, videos, detections, storage, maxUploadBytes }: VideoRoutesDeps): Router {
  const router = Router();

  router.post('/videos', ...uploadMiddleware(uploads, maxUploadBytes), async (req, res) => {
    const staged = stagedUpload(req);
    if (!staged) throw errors.badRequest('missing_file', 'send the video as multipart/form-data in the field "video"');
    const body = (req.body ?? {}) as Record<string, unknown>;
    const fps = typeof body.fps === 'string' ? body.fps : undefined;
    if (body.fps !== undefined && fps === undefined) {
      await uploads.discardStaged(staged.videoId);
      throw errors.badRequest('invalid_fps', 'send fps once, as a plain form field');
    }
    const video = await uploads.acceptUpload(staged, fps);
    res.status(202).location(`/videos/${video.id}`).json({ id: video.id, status: video.status });
  });

  router.get('/videos/:id', async (req, res) => {
    res.json(presentVideo(await findVideo(videos, req.params.id)));
  });

  router.get('/videos/:id/detections', async (req, res) => {
    const video = await findVideo(videos, req.params.id);
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
  router.get('/videos/:id/preview', async (req, res) => {
    const video = await findVideo(videos, req.params.id);
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

async function findVideo(videos: VideoRepository, id: string): Promise<VideoRecord> {
  const video = UUID.test(id) ? await videos.get(id) : undefined;
  if (!video) throw errors.notFound(`video ${id}`);
  return video;
}

export function presentVideo(video: VideoRecord) {
  return {
    id: video.id,
    status: video.status,
    originalName: video.originalName,
    sizeBytes: video.sizeBytes,
    sampleFps: video.sampleFps,
    framesTotal: video.framesTotal,
    framesDone: video.framesDone,
    framesFailed: video.framesFailed,
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
    preview: video.preview ? { url: `/videos/${video.id}/preview`, mimeType: video.preview.mimeType } : null,
  };
}

function stringParam(raw: unknown, name: string): string | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > 100) throw errors.badRequest('invalid_query', `${name} must be a single non-empty value`);
  return raw;
}

function numberParam(raw: unknown, name: string, range: { min: number; max: number }): number | undefined {
  const text = stringParam(raw, name);
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^-?\d+(\.\d+)?$/.test(text) || value < range.min || value > range.max) {
    throw errors.badRequest('invalid_query', `${name} must be a number in [${range.min}, ${range.max}]`);
  }
  return value;
}

function integerParam(raw: unknown, name: string, range: { min: number; max: number }): number | undefined {
  const value = numberParam(raw, name, range);
  if (value !== undefined && !Number.isInteger(value)) throw errors.badRequest('invalid_query', `${name} must be a whole number`);
  return value;
}

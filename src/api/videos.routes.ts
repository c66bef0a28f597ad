import { Router, type RequestHandler } from 'express';
import type { DetectionRepository, VideoRecord, VideoRepository } from '../db/types.ts';
import { errors } from '../errors/app-error.ts';
import type { UploadService } from '../services/upload.service.ts';
import { stagedUpload, uploadMiddleware } from './upload.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface VideoRoutesDeps {
  uploads: UploadService;
  videos: VideoRepository;
  detections: DetectionRepository;
  maxUploadBytes: number;
  /** Runs before the body is read: upload slots, free space, deadlines (see upload-admission.ts). */
  admission: RequestHandler;
}

export function videoRoutes({ uploads, videos, detections, maxUploadBytes, admission }: VideoRoutesDeps): Router {
  const router = Router();

  router.post('/videos', admission, ...uploadMiddleware(uploads, maxUploadBytes), async (req, res) => {
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

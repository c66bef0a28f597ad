import express, { type Express } from 'express';
import type { DetectionRepository, VideoRepository } from '../db/types.ts';
import type { Logger } from '../logger.ts';
import type { UploadService } from '../services/upload.service.ts';
import type { StorageSpace } from '../storage/video-storage.ts';
import { errorHandler, notFoundHandler } from './error-handler.ts';
import { adminRoutes, type DeadLetterQueue } from './admin.routes.ts';
import { healthRoutes, type ReadinessCheck } from './health.routes.ts';
import { uploadAdmission, type UploadAdmissionSettings } from './upload-admission.ts';
import { videoRoutes } from './videos.routes.ts';

export interface AppDeps {
  uploads: UploadService;
  videos: VideoRepository;
  detections: DetectionRepository;
  readiness: ReadinessCheck[];
  logger: Logger;
  maxUploadBytes: number;
  deadLetters: DeadLetterQueue;
  adminToken: string | undefined;
  /** Caps on uploads in progress, their deadlines, and the free space they need. */
  uploadAdmission: UploadAdmissionSettings;
  storageSpace: Pick<StorageSpace, 'freeBytes'>;
}

export function createApp(deps: AppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  app.use(healthRoutes(deps.readiness));
  app.use(videoRoutes({ ...deps, admission: uploadAdmission(deps.uploadAdmission, deps.storageSpace) }));
  app.use(adminRoutes(deps.deadLetters, deps.adminToken));
  app.use(notFoundHandler);
  app.use(errorHandler(deps.logger, deps.maxUploadBytes));
  return app;
}

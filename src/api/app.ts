import express, { type Express } from 'express';
import type { DetectionRepository, VideoRepository } from '../db/types.ts';
import type { Logger } from '../logger.ts';
import type { UploadService } from '../services/upload.service.ts';
import { errorHandler, notFoundHandler } from './error-handler.ts';
import { adminRoutes, type DeadLetterQueue } from './admin.routes.ts';
import { healthRoutes, type ReadinessCheck } from './health.routes.ts';
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
}

export function createApp(deps: AppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  app.use(healthRoutes(deps.readiness));
  app.use(videoRoutes(deps));
  app.use(adminRoutes(deps.deadLetters, deps.adminToken));
  app.use(notFoundHandler);
  app.use(errorHandler(deps.logger, deps.maxUploadBytes));
  return app;
}

import express, { type Express } from 'express';
import type { AnalyticsRepository } from '../db/analytics.repository.ts';
import type { DetectionRepository } from '../db/types.ts';
import type { VideoCatalog } from '../db/video-catalog.repository.ts';
import type { Logger } from '../logger.ts';
import type { ServiceMetrics } from '../metrics/service-metrics.ts';
import type { AuthService } from '../services/auth.service.ts';
import type { ProgressHub } from '../services/progress-hub.ts';
import type { UploadService } from '../services/upload.service.ts';
import type { VideoLifecycleService } from '../services/video-lifecycle.service.ts';
import type { VideoStorage } from '../storage/video-storage.ts';
import type { StorageSpace } from '../storage/video-storage.ts';
import { adminRoutes, type DeadLetterQueue } from './admin.routes.ts';
import { analyticsRoutes } from './analytics.routes.ts';
import { authenticate } from './auth.ts';
import { errorHandler, notFoundHandler } from './error-handler.ts';
import { eventRoutes } from './events.routes.ts';
import { healthRoutes, type ReadinessCheck } from './health.routes.ts';
import { keyRoutes } from './keys.routes.ts';
import { metricsRoutes } from './metrics.routes.ts';
import { openApiDocument } from './openapi.ts';
import { sessionRoutes } from './session.routes.ts';
import { uploadAdmission, type UploadAdmissionSettings } from './upload-admission.ts';
import { videoRoutes } from './videos.routes.ts';
import { webAppRoutes } from './web-app.routes.ts';

export interface AppSettings {
  maxUploadBytes: number;
  sessionTtlMs: number;
  cookieSecure: 'auto' | 'true' | 'false';
  analyticsMaxBuckets: number;
}

export interface AppDeps {
  uploads: UploadService;
  /** Cancel and delete (DELETE /videos/:id, POST /videos/:id/cancel). */
  lifecycle: Pick<VideoLifecycleService, 'cancel' | 'delete'>;
  catalog: VideoCatalog;
  detections: DetectionRepository;
  storage: VideoStorage;
  analytics: AnalyticsRepository;
  auth: AuthService;
  progress: ProgressHub;
  metrics: ServiceMetrics;
  readiness: ReadinessCheck[];
  logger: Logger;
  deadLetters: DeadLetterQueue;
  settings: AppSettings;
  /** The built web app served at / (see webAppRoutes). */
  webDir: string;
  /** Caps on uploads in progress, their deadlines, and the free space they need. */
  uploadAdmission: UploadAdmissionSettings;
  storageSpace: Pick<StorageSpace, 'freeBytes'>;
}

export function createApp(deps: AppDeps): Express {
  const { settings } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  app.use(deps.metrics.httpMiddleware());
  // Default deny: everything below needs a key except what isPublicRequest lists (health, sign-in, the web app's files).
  app.use(authenticate(deps.auth));
  app.use(healthRoutes(deps.readiness));
  app.get('/openapi.json', (_req, res) => {
    res.json(openApiDocument);
  });
  app.use(sessionRoutes(deps.auth, settings));
  app.use(metricsRoutes(deps.metrics));
  app.use(
    videoRoutes({
      uploads: deps.uploads,
      catalog: deps.catalog,
      detections: deps.detections,
      storage: deps.storage,
      maxUploadBytes: settings.maxUploadBytes,
      observer: deps.metrics,
      admission: uploadAdmission(deps.uploadAdmission, deps.storageSpace),
      lifecycle: deps.lifecycle,
    }),
  );
  app.use(eventRoutes(deps.catalog, deps.progress));
  app.use(analyticsRoutes(deps.catalog, deps.analytics, settings));
  app.use(keyRoutes(deps.auth));
  app.use(adminRoutes(deps.deadLetters));
  app.use(webAppRoutes(deps.webDir, deps.logger));
  app.use(notFoundHandler);
  app.use(errorHandler(deps.logger, settings.maxUploadBytes));
  return app;
}

import type { Server } from 'node:http';
import { createApp } from '../api/app.ts';
import type { ReadinessCheck } from '../api/health.routes.ts';
import { createDetector } from '../detection/create-detector.ts';
import { prepareFrame } from '../detection/letterbox.ts';
import type { Detector } from '../detection/types.ts';
import { DetectionService } from '../services/detection.service.ts';
import { IngestService } from '../services/ingest.service.ts';
import { DetectionWorker } from '../worker/detection-worker.ts';
import { createMedia, type Runtime } from './runtime.ts';

export function baseReadiness(runtime: Runtime): ReadinessCheck[] {
  return [
    { name: 'redis', check: async () => ({ ok: (await runtime.redis.ping()) === 'PONG' }) },
    { name: 'postgres', check: async () => (await runtime.sql`select 1 as ok`, { ok: true }) },
  ];
}

export function detectorReadiness(detector: Detector): ReadinessCheck {
  return {
    name: 'model',
    check: async () => ({
      ok: true,
      detail: { engine: detector.engine, device: detector.device, classes: detector.modelInfo.names.length, imgsz: detector.modelInfo.imgsz },
    }),
  };
}

export interface ApiRole {
  server: Server;
  ingest: IngestService;
  stop(): Promise<void>;
}

export async function startApi(runtime: Runtime, readiness: ReadinessCheck[]): Promise<ApiRole> {
  const { config, logger } = runtime;
  const ingest = new IngestService(config, runtime.videos, runtime.storage, await createMedia(config), runtime.queue, logger);
  const app = createApp({
    ingest,
    videos: runtime.videos,
    detections: runtime.detections,
    readiness,
    logger,
    maxUploadBytes: config.maxUploadBytes,
    deadLetters: runtime.queue,
    adminToken: config.adminToken,
  });
  const server = await new Promise<Server>((resolve, reject) => {
    const listening = app.listen(config.port, config.host, () => resolve(listening));
    listening.once('error', reject);
  });
  // Uploads of large videos are slow; let the body arrive, but drop idle sockets.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  ingest.startRecovery();
  const address = server.address();
  logger.info('api listening', { port: typeof address === 'object' && address ? address.port : config.port });
  return {
    server,
    ingest,
    async stop() {
      ingest.stopRecovery();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await ingest.idle();
    },
  };
}

export interface WorkerRole {
  worker: DetectionWorker;
  detection: DetectionService;
  detector: Detector;
  stop(): Promise<void>;
}

export async function startWorker(runtime: Runtime, detector?: Detector): Promise<WorkerRole> {
  const { config, logger } = runtime;
  const model = detector ?? (await createDetector({
      engine: config.detectorEngine,
      modelPath: config.modelPath,
      threads: config.ortThreads,
      onnxFramesPerRun: config.onnxFramesPerRun,
      tfjs: { modelDir: config.tfjsModelDir, backend: config.tfjsBackend },
      onChoice: (choice) => logger.info('detector engine chosen', { requested: config.detectorEngine, engine: choice.engine, backend: choice.backend, reason: choice.reason }),
    }));
  logger.info('detector ready', { engine: model.engine, device: model.device, classes: model.modelInfo.names.length, modelPath: config.modelPath });
  const detection = new DetectionService(runtime.videos, runtime.detections, runtime.storage, model, prepareFrame, {
    confidenceThreshold: config.confidenceThreshold,
    iouThreshold: config.iouThreshold,
  }, { keepFrames: config.keepFrames, logger });
  const worker = new DetectionWorker(runtime.queue, detection, config, logger);
  await worker.start();
  return {
    worker,
    detection,
    detector: model,
    async stop() {
      await worker.stop();
      await model.close();
    },
  };
}

import type { Server } from 'node:http';
import path from 'node:path';
import express from 'express';
import { createApp } from '../api/app.ts';
import { healthRoutes, type ReadinessCheck } from '../api/health.routes.ts';
import { createHttpServer, listen } from '../api/http-server.ts';
import { metricsHandler } from '../api/metrics.routes.ts';
import { createDetector } from '../detection/create-detector.ts';
import { availableCores, DetectorPool, planLanes } from '../detection/detector-pool.ts';
import type { EngineChoice } from '../detection/engine-selection.ts';
import { prepareFrame, tuneImageDecoding, useFrameDecoder } from '../detection/letterbox.ts';
import type { Detector } from '../detection/types.ts';
import { AuthService } from '../services/auth.service.ts';
import { int8ModelFor } from '../services/calibration.service.ts';
import { DetectionService } from '../services/detection.service.ts';
import { ExtractionService } from '../services/extraction.service.ts';
import { PreviewService } from '../services/preview.service.ts';
import { ProgressHub } from '../services/progress-hub.ts';
import { UploadService } from '../services/upload.service.ts';
import { VideoLifecycleService, type ExtractionStopper } from '../services/video-lifecycle.service.ts';
import { detectHandler, extractHandler, type HandlerRegistry } from '../worker/job-handlers.ts';
import { QueueWorker } from '../worker/queue-worker.ts';
import { announceFirstKey, prepareApiKeys } from './api-keys.ts';
import { errorMessage } from '../errors/error-message.ts';
import { checkIdleScheduler } from '../media/binaries.ts';
import { baseReadiness, detectorReadiness } from './readiness.ts';
import { createMedia, type Runtime } from './runtime.ts';

export interface ApiRole {
  server: Server;
  uploads: UploadService;
  stop(): Promise<void>;
}

/** The API accepts uploads (probe and limits) and queues their extraction; workers extract (WORKER_ROLES). */
export async function startApi(runtime: Runtime, readiness: ReadinessCheck[], localExtractions?: ExtractionStopper): Promise<ApiRole> {
  const { config, logger } = runtime;
  const media = await createMedia(config);
  const uploads = new UploadService(config, runtime.videos, runtime.storage, media, runtime.queue);
  // Extractions run in workers and each stops by its own poll of the video's status (see ExtractionService);
  // one in this process (all-in-one: `localExtractions`) is stopped at once, and the request waits for it.
  const lifecycle = new VideoLifecycleService(runtime.videos, localExtractions, runtime.queue, runtime.storage, config, logger, runtime.metrics);
  const auth = new AuthService(runtime.authRepository, { sessionTtlMs: config.sessionTtlMs });
  const firstKey = await prepareApiKeys(auth, config, logger);
  const progress = new ProgressHub(runtime.catalog, config.progressPollMs, logger);
  const app = createApp({
    uploads,
    lifecycle,
    catalog: runtime.catalog,
    detections: runtime.detections,
    storage: runtime.storage,
    analytics: runtime.analytics,
    auth,
    progress,
    metrics: runtime.metrics,
    readiness,
    logger,
    deadLetters: runtime.queue,
    settings: config,
    webDir: config.webDir,
    uploadAdmission: config.limits,
    storageSpace: runtime.storage,
  });
  const server = createHttpServer(app, config.limits);
  await listen(server, config.port, config.host);
  sweepStalePartials(runtime);
  logger.info('api listening', { port: portOf(server) });
  if (firstKey) await announceFirstKey(firstKey, config, portOf(server) ?? config.port, logger);
  return {
    server,
    uploads,
    async stop() {
      // Event streams never end by themselves; closing them lets server.close() finish.
      progress.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface WorkerRole {
  worker: QueueWorker;
  /** Present when the worker takes detect jobs (WORKER_ROLES). */
  detection: DetectionService | undefined;
  /** Present when the worker takes detect jobs; an extract-only worker never loads the model. */
  detector: Detector | undefined;
  /** How createDetector picked the engine; undefined when the detector was passed in or none was loaded. */
  choice: EngineChoice | undefined;
  /** Serves /healthz and /readyz when WORKER_HEALTH_PORT is set. */
  healthServer: Server | undefined;
  /** Present when the worker takes extract jobs: the extractions it runs, for an API in the same process to stop. */
  extraction: ExtractionService | undefined;
  stop(): Promise<void>;
}

/** A queue worker for the job kinds in WORKER_ROLES: extract (ffmpeg), detect (the model), or both. */
export async function startWorker(runtime: Runtime, detector?: Detector): Promise<WorkerRole> {
  const { config, logger } = runtime;
  const roles = config.workerRoles;
  const handlers: { -readonly [K in keyof HandlerRegistry]: HandlerRegistry[K] } = {};
  let choice: EngineChoice | undefined;
  let model: Detector | undefined;
  let detection: DetectionService | undefined;
  let extraction: ExtractionService | undefined;
  if (roles.includes('detect')) {
    // Before int8 calibration, which prepares its frames as the worker will. One libvips thread per frame (a
    // job's frames decode in parallel on libuv's threads) and no libvips cache.
    tuneImageDecoding(1);
    logger.info('frame decoder chosen', { requested: config.frameDecoder, decoder: useFrameDecoder(config.frameDecoder) });
    const modelPath = detector ? config.modelPath : await modelForPrecision(runtime);
    model = detector ?? (await createDetector({
        engine: config.detectorEngine,
        modelPath,
        threads: config.ortThreads,
        onnxLanes: planLanes(await availableCores(), config.detectLanes, config.ortThreads),
        onnxFramesPerRun: config.onnxFramesPerRun,
        onOnnxFixedBatch: (reason) => logger.warn('ONNX model keeps its fixed batch: ONNX_FRAMES_PER_RUN has no effect', { reason }),
        onOnnxFloatInput: (reason) => logger.warn('ONNX model keeps its float input: frames are normalised in JavaScript', { reason }),
        tfjs: { modelDir: config.tfjsModelDir, backend: config.tfjsBackend },
        onChoice: (picked) => {
          choice = picked;
          logger.info('detector engine chosen', { requested: config.detectorEngine, engine: picked.engine, backend: picked.backend, reason: picked.reason });
        },
      }));
    const lanes = model instanceof DetectorPool ? model.lanes : 1;
    const laneThreadIds = model instanceof DetectorPool ? model.startedLaneThreadIds : undefined;
    logger.info('detector ready', { lanes, laneThreadIds, engine: model.engine, backend: model.backend, device: model.device, classes: model.modelInfo.names.length, modelPath, precision: config.modelPrecision });
    detection = new DetectionService(runtime.videos, runtime.detections, runtime.storage, model, prepareFrame, {
      confidenceThreshold: config.confidenceThreshold,
      iouThreshold: config.iouThreshold,
    }, { keepFrames: config.keepFrames, logger }, runtime.metrics);
    runtime.metrics.setDetector({ engine: model.engine, backend: model.backend, device: model.device, model: path.basename(config.modelPath) });
    handlers.detect = detectHandler(detection, { heartbeatTtlMs: config.heartbeatTtlMs, lanes }, logger);
  }
  if (roles.includes('extract')) {
    // ffmpeg, prlimit and chrt are looked up now: a worker image without them fails here, before taking a job.
    const media = await createMedia(config);
    if (config.previewCodec !== 'off' && config.previewCpuPolicy === 'idle') await checkIdleScheduler();
    const previews = new PreviewService(config, runtime.videos, runtime.storage, media, logger);
    extraction = new ExtractionService(config, runtime.videos, runtime.storage, media, runtime.queue, logger, previews, runtime.metrics);
    // Uploads publish their job right after their row commits; the grace only keeps the sweep off those in flight.
    handlers.extract = extractHandler(extraction, { concurrency: config.extractionConcurrency, sweepGraceMs: 2 * config.heartbeatTtlMs }, logger);
  }
  const worker = new QueueWorker(runtime.queue, handlers, roles, config, logger);
  // A worker has no API of its own; orchestrators (Docker HEALTHCHECK, Kubernetes probes) need one to ask.
  let healthServer: Server | undefined;
  if (config.workerHealthPort !== undefined) {
    const checks = [
      ...baseReadiness(runtime),
      ...(model ? [detectorReadiness(model, choice)] : []),
      { name: 'worker', check: async () => ({ ok: worker.isRunning, detail: { id: worker.id, roles } }) },
    ];
    const app = express();
    app.disable('x-powered-by');
    app.use(healthRoutes(checks));
    // The health port is the operators' (not published like the API port), so /metrics needs no key here.
    app.get('/metrics', metricsHandler(runtime.metrics));
    healthServer = createHttpServer(app);
    await listen(healthServer, config.workerHealthPort, config.host);
    logger.info('worker health endpoints listening', { port: portOf(healthServer) });
  }
  // After the health port is bound: a port in use stops the process before it takes any job.
  await worker.start();
  sweepStalePartials(runtime);
  return {
    worker,
    detection,
    detector: model,
    choice,
    healthServer,
    extraction,
    async stop() {
      await worker.stop();
      if (detection) logger.info('detection stage timings', { stageTimings: detection.timings });
      if (healthServer) await new Promise<void>((resolve) => healthServer.close(() => resolve()));
      await model?.close();
    },
  };
}

/** MODEL_PATH itself for fp32; for int8 its quantization, cached beside it or made now from the calibration video. */
async function modelForPrecision({ config, logger }: Runtime): Promise<string> {
  if (config.modelPrecision === 'fp32') return config.modelPath;
  const settings = { video: config.calibrationVideo, frames: config.calibrationFrames, frameSize: config.frameSize };
  const { path, quantized } = await int8ModelFor(config.modelPath, await createMedia(config), settings);
  if (quantized) logger.info('int8 model quantized', { path, ...quantized, calibrationVideo: settings.video });
  else logger.info('int8 model loaded from its cache', { path });
  return path;
}

/**
 * A process killed during a write (kill -9, OOM) leaves the write's temporary file in storage.
 * Swept in the background once the process runs: files untouched for twice IDLE_TIMEOUT_MS (an upload
 * in progress writes more often than that, or is cut off), and once more later for those too young
 * the first time.
 */
function sweepStalePartials(runtime: Runtime): void {
  const olderThanMs = Math.max(1_000, 2 * runtime.config.limits.idleTimeoutMs);
  const sweep = async (again: boolean) => {
    const { removed, young } = await runtime.storage.sweepStalePartials(olderThanMs);
    if (removed > 0) runtime.logger.info('removed unfinished writes left by a stopped process', { files: removed });
    if (young > 0 && again) setTimeout(() => void sweep(false).catch(warn), olderThanMs).unref();
  };
  const warn = (error: unknown) => runtime.logger.warn('could not sweep unfinished writes', { error: errorMessage(error) });
  void sweep(true).catch(warn);
}

function portOf(server: Server): number | undefined {
  const address = server.address();
  return typeof address === 'object' && address ? address.port : undefined;
}

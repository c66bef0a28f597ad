import type { RequestHandler } from 'express';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { LifecycleObserver, PipelineObserver, Stage } from './observer.ts';

/** Jobs waiting, held by workers, and dead-lettered; read from Redis when Prometheus scrapes. */
export interface QueueDepthSource {
  depth(): Promise<{ pending: number; processing: number; deadLetters: number }>;
}

export interface DetectorLabels {
  engine: string;
  backend: string;
  device: string;
  model: string;
}

// Seconds: a frame's read or decode takes milliseconds, an extraction minutes.
const STAGE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900];
const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * The Prometheus metrics of one process (API, worker, or both in one): a registry of its own, the
 * pipeline observer the services call, an HTTP middleware, and gauges read at scrape time.
 */
export class ServiceMetrics implements PipelineObserver, LifecycleObserver {
  readonly registry = new Registry();
  private readonly stages: Histogram<'stage'>;
  private readonly jobs: Counter<'outcome'>;
  private readonly frames: Counter<'outcome'>;
  private readonly uploadBytes: Counter;
  private readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  private readonly httpDuration: Histogram<'method' | 'route'>;
  private readonly detectorInfo: Gauge<keyof DetectorLabels>;
  private readonly videosStopped: Counter<'action'>;
  private readonly jobsDiscarded: Counter;

  constructor(options: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
    this.stages = new Histogram({ name: 'vidsense_stage_duration_seconds', help: 'Pipeline stage latency: read and decode_letterbox per frame; inference, nms and insert per job; extraction per video', labelNames: ['stage'], buckets: STAGE_BUCKETS, registers });
    this.jobs = new Counter({ name: 'vidsense_jobs_total', help: 'Detection jobs finished by this process: committed, or failed (dead-lettered after MAX_ATTEMPTS)', labelNames: ['outcome'], registers });
    this.frames = new Counter({ name: 'vidsense_frames_total', help: 'Frames finished by this process: processed (run through the detector and committed) or failed (corrupt, or in a dead-lettered job)', labelNames: ['outcome'], registers });
    this.uploadBytes = new Counter({ name: 'vidsense_upload_bytes_total', help: 'Bytes of accepted uploads', registers });
    this.httpRequests = new Counter({ name: 'vidsense_http_requests_total', help: 'HTTP requests by Express route pattern and status', labelNames: ['method', 'route', 'status'], registers });
    this.httpDuration = new Histogram({ name: 'vidsense_http_request_duration_seconds', help: 'HTTP request duration by Express route pattern (event streams last as long as they are open)', labelNames: ['method', 'route'], buckets: HTTP_BUCKETS, registers });
    this.detectorInfo = new Gauge({ name: 'vidsense_detector_info', help: 'The detector this worker runs (value 1)', labelNames: ['engine', 'backend', 'device', 'model'], registers });
    this.videosStopped = new Counter({ name: 'vidsense_videos_stopped_total', help: 'Videos cancelled (POST /videos/:id/cancel) or deleted (DELETE /videos/:id) through this process', labelNames: ['action'], registers });
    this.jobsDiscarded = new Counter({ name: 'vidsense_jobs_discarded_total', help: 'Queued or dead-lettered jobs removed because their video was cancelled or deleted', registers });
    // Every series present from the start (at 0), so a rate() or an alert sees it before its first event.
    for (const stage of ['read', 'decode_letterbox', 'inference', 'nms', 'insert', 'extraction'] satisfies Stage[]) this.stages.zero({ stage });
    for (const outcome of ['committed', 'failed']) this.jobs.labels(outcome).inc(0);
    for (const outcome of ['processed', 'failed']) this.frames.labels(outcome).inc(0);
    for (const action of ['cancelled', 'deleted']) this.videosStopped.labels(action).inc(0);
  }

  videoStopped(action: 'cancelled' | 'deleted', jobsDiscarded: number): void {
    this.videosStopped.labels(action).inc();
    this.jobsDiscarded.inc(jobsDiscarded);
  }

  stage(stage: Stage, seconds: number): void {
    this.stages.labels(stage).observe(seconds);
  }

  jobCommitted(frames: { processed: number; corrupt: number }): void {
    this.jobs.labels('committed').inc();
    this.frames.labels('processed').inc(frames.processed);
    this.frames.labels('failed').inc(frames.corrupt);
  }

  jobDeadLettered(frames: number): void {
    this.jobs.labels('failed').inc();
    this.frames.labels('failed').inc(frames);
  }

  uploadAccepted(bytes: number): void {
    this.uploadBytes.inc(bytes);
  }

  setDetector(labels: DetectorLabels): void {
    this.detectorInfo.labels(labels).set(1);
  }

  /** Queue depth as a gauge read at scrape time (once per registry). */
  watchQueue(source: QueueDepthSource): void {
    new Gauge({
      name: 'vidsense_queue_jobs',
      help: 'Detection jobs in the queue by state: pending, processing (held by workers), dead_letter',
      labelNames: ['state'],
      registers: [this.registry],
      async collect() {
        try {
          const depth = await source.depth();
          this.labels('pending').set(depth.pending);
          this.labels('processing').set(depth.processing);
          this.labels('dead_letter').set(depth.deadLetters);
        } catch {
          // Redis unreachable: the series go absent for this scrape rather than repeat stale values or fail the scrape.
          this.reset();
        }
      },
    });
  }

  /**
   * Counts each request once it is answered, labelled with the Express route pattern that served it
   * (`/videos/:id`), never the URL itself; requests no route served get one of three fixed labels.
   */
  httpMiddleware(): RequestHandler {
    return (req, res, next) => {
      const started = performance.now();
      let counted = false;
      // 'finish' once the answer is handed to the socket (before the client can send its next request);
      // 'close' alone for a client that went away first.
      const count = () => {
        if (counted) return;
        counted = true;
        const routePath = (req.route as { path?: unknown } | undefined)?.path;
        const route = typeof routePath === 'string' ? req.baseUrl + routePath : unroutedLabel(res.statusCode);
        this.httpRequests.labels(req.method, route, String(res.statusCode)).inc();
        this.httpDuration.labels(req.method, route).observe((performance.now() - started) / 1000);
      };
      res.once('finish', count);
      res.once('close', count);
      next();
    };
  }

  metricsText(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

function unroutedLabel(status: number): string {
  if (status === 401) return '(unauthenticated)'; // refused before routing
  if (status === 404) return '(unmatched)';
  return '(no route)'; // static files, or an error before routing (503)
}

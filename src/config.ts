import os from 'node:os';
import path from 'node:path';
import type { PreviewCodec } from './media/preview-args.ts';
import { JOB_KINDS, type JobKind } from './queue/types.ts';

/**
 * The only reader of process.env. Everything else receives a frozen Config.
 * Defaults work on a fresh machine with local Redis and PostgreSQL.
 */
export interface Config {
  readonly nodeEnv: 'development' | 'production' | 'test';
  readonly port: number;
  readonly host: string;
  readonly redisUrl: string;
  /**
   * Set when the queue runs on a Redis Cluster: REDIS_CLUSTER_NODES (host:port,...) or a
   * redis+cluster:// (rediss+cluster:// for TLS) REDIS_URL. Then redisUrl is not used.
   */
  readonly redisCluster: RedisClusterConfig | undefined;
  /**
   * QUEUE_SHARDS: how many partitions the queue's keys are split into (a video's jobs all go to one, chosen
   * by its id). On a cluster each shard's keys share a hash tag, so they live on one primary; the count is
   * stored in Redis and every process must use the same (see ReliableQueue.checkShardCount).
   */
  readonly queueShards: number;
  /** Replicas that must acknowledge a publish (WAIT) before it counts as done; 0: do not wait. */
  readonly queueWaitReplicas: number;
  readonly queueWaitTimeoutMs: number;
  /** How long queue commands keep retrying through a cluster failover before they fail. */
  readonly queueFailoverTimeoutMs: number;
  /** Prefix of every Redis key this service writes; lets test runs and deployments share a server. */
  readonly queuePrefix: string;
  readonly databaseUrl: string;
  readonly storageDir: string;
  /** Which VideoStorage adapter holds uploads and frames. */
  readonly storageDriver: 'local' | 's3';
  /** Set when storageDriver is 's3'; credentials come from the AWS SDK's default chain. */
  readonly s3: S3Config | undefined;
  /** Keep extracted frames after their detections are committed (they are deleted by default). */
  readonly keepFrames: boolean;
  /** Keep the uploaded video after its frames are extracted. */
  readonly keepSourceVideo: boolean;
  /** Where ffmpeg's local copy of a remote (S3) upload is downloaded; deleted after use. */
  readonly workDir: string;
  readonly modelPath: string;
  /**
   * onnx: ONNX Runtime (CPU); tfjs: TensorFlow.js on TFJS_BACKEND with a graph model converted from
   * MODEL_PATH (or a SavedModel on node/node-gpu); auto: tfjs on node-gpu when @tensorflow/tfjs-node-gpu
   * is installed and sees a GPU, else onnx.
   */
  readonly detectorEngine: 'onnx' | 'tfjs' | 'auto';
  readonly tfjsModelDir: string;
  /**
   * wasm and cpu ship with the service; node and node-gpu need the optional @tensorflow/tfjs-node(-gpu).
   * auto (default) picks at run time: node-gpu when installed and it sees a GPU, else node when
   * installed, else wasm.
   */
  readonly tfjsBackend: 'auto' | 'wasm' | 'cpu' | 'node' | 'node-gpu';
  readonly batchSize: number;
  readonly maxUploadBytes: number;
  /** Default frames per second sampled from an upload; null means every frame. */
  readonly defaultFps: number | null;
  readonly maxFps: number;
  /** Extraction jobs one worker runs at once (each an ffmpeg process), when it takes extract jobs. */
  readonly extractionConcurrency: number;
  /** Uploads checked with ffprobe and ffmpeg at once per API process (each check runs up to three processes). */
  readonly probeConcurrency: number;
  /** WORKER_ROLES: the job kinds a worker process takes (extract: ffmpeg frame extraction; detect: the model). */
  readonly workerRoles: readonly JobKind[];
  readonly confidenceThreshold: number;
  readonly iouThreshold: number;
  readonly jpegQuality: number;
  /** A worker whose heartbeat is older than this is presumed dead and its jobs are reclaimed. */
  readonly heartbeatTtlMs: number;
  readonly reclaimIntervalMs: number;
  readonly ortThreads: number;
  /** Frames per ONNX Runtime run; 1 is fastest on CPU, larger suits accelerator providers. */
  readonly onnxFramesPerRun: number;
  /** DETECT_LANES: ONNX Runtime sessions a worker runs at once, each on a thread of its own; 0 plans them from the cores (planLanes). */
  readonly detectLanes: number;
  /** Port of a worker process's /healthz and /readyz; unset: none (the API serves its own on PORT). */
  readonly workerHealthPort: number | undefined;
  /** Failed deliveries of a job before it goes to the dead-letter list. */
  readonly maxAttempts: number;
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
  /** Refuse to start unless Redis has AOF on and eviction off (the zero-loss settings). */
  readonly requireDurableRedis: boolean;
  /** How long a SIGTERM/SIGINT shutdown may take before the process exits anyway. */
  readonly shutdownTimeoutMs: number;
  readonly logLevel: string;
  readonly logFormat: 'json' | 'pretty';
  // Web API (issue 10): keys, sessions, live progress, analytics.
  /**
   * API_KEY: an admin key created or updated at start-up (compose files, tests). Unset: the keys in
   * PostgreSQL, and on a first start without any, a new admin key written to apiKeyFile.
   */
  readonly apiKey: string | undefined;
  /** Where the first start writes the admin key it created (mode 600). */
  readonly apiKeyFile: string;
  /** How long a web session (cookie) lasts after sign-in. */
  readonly sessionTtlMs: number;
  /** Secure flag of the session cookie: auto sets it when the request came over https. */
  readonly cookieSecure: 'auto' | 'true' | 'false';
  /** How often one API process reads the progress of the videos its event streams watch. */
  readonly progressPollMs: number;
  /** Most buckets one /analytics/counts request may span (range / bucket size). */
  readonly analyticsMaxBuckets: number;
  /** Things to log at start-up (deprecated settings in use). */
  readonly warnings: readonly string[];
  readonly ffmpegPath: string | undefined;
  readonly ffprobePath: string | undefined;
  // Web app and previews (issue 10).
  /** The built web app (index.html and assets/) the API serves at /. */
  readonly webDir: string;
  /** The browser-playable preview written after extraction: h264 (MP4), vp9 (WebM) or off. */
  readonly previewCodec: PreviewCodec | 'off';
  /** A preview that would reach this size is dropped (the video has none). */
  readonly previewMaxBytes: number;
  /** A preview encode running longer than this is stopped and dropped. */
  readonly previewTimeoutMs: number;
  /** The preview's ffmpeg runs at this nice value (0-19) so detection of the same video comes first. */
  readonly previewNiceness: number;
  /** idle: the preview's ffmpeg runs under SCHED_IDLE, on CPU time no other thread wants; normal: at its nice value only. */
  readonly previewCpuPolicy: 'idle' | 'normal';

  // Frame size and model precision (FRAME_SIZE, MODEL_PRECISION, CALIBRATION_*).
  /**
   * Extracted frames are stored scaled down to fit this box (width x height) as the model's letterbox would
   * fit them, so the worker decodes small frames and need not resize; boxes still map to source pixels.
   * null (FRAME_SIZE=source) stores them at source resolution.
   */
  readonly frameSize: { readonly width: number; readonly height: number } | null;
  /**
   * The library decoding stored frames in the worker: auto takes libjpeg-turbo (an optional binding, about
   * 4x less CPU a frame here) where it loads, libvips otherwise; frames that need a resize always use libvips.
   */
  readonly frameDecoder: 'auto' | 'libjpeg-turbo' | 'libvips';
  /**
   * fp32 runs MODEL_PATH as it is; int8 runs a static int8 quantization of it (ONNX Runtime only), made at
   * worker start-up from frames of calibrationVideo and cached beside the model.
   */
  readonly modelPrecision: 'fp32' | 'int8';
  readonly calibrationVideo: string;
  readonly calibrationFrames: number;
  /** Hostile-input limits: what one upload may cost (see HostileInputLimits). */
  readonly limits: HostileInputLimits;
}

/**
 * What one upload may cost, and how long a client may take to send it. Each is checked at upload
 * (refused with a status of its own) and, where a file could lie about itself, again while it is decoded.
 */
export interface HostileInputLimits {
  /** Longest video accepted (probed duration; extraction stops a video whose frames run past it). */
  readonly maxDurationS: number;
  /** Most frames extracted from one video, after sampling. */
  readonly maxFrames: number;
  /** Largest frame (width x height) accepted; decoders refuse larger pictures too. */
  readonly maxPixels: number;
  /** Address-space ceiling (RLIMIT_AS) of every ffprobe and ffmpeg run; 0 = none. */
  readonly mediaMemoryLimitBytes: number;
  /** Free storage below this makes /readyz not ready and uploads 507; 0 = no check. */
  readonly minFreeBytes: number;
  /** Time for a request's headers to arrive. */
  readonly headersTimeoutMs: number;
  /** Time for an upload's whole body to arrive. */
  readonly requestTimeoutMs: number;
  /** Longest pause in an upload's body. */
  readonly idleTimeoutMs: number;
  /** Uploads in progress at once per API process (503 beyond). */
  readonly maxConcurrentUploads: number;
  /** Uploads in progress at once from one client address (429 beyond). */
  readonly maxUploadsPerClient: number;
}

/** Below one frame per 100 s a sampling is almost certainly a mistake (fps=0.0000001 took no frame at all). */
export const MIN_SAMPLE_FPS = 0.01;
/** pts_ms is an integer column (milliseconds up to 2^31 - 1): the duration limit keeps every frame time inside it. */
const MAX_DURATION_LIMIT_S = 2_000_000;

export interface RedisClusterConfig {
  /** Seed nodes; the client discovers the rest of the cluster from any of them. */
  readonly nodes: ReadonlyArray<{ readonly host: string; readonly port: number }>;
  readonly tls: boolean;
  readonly username: string | undefined;
  readonly password: string | undefined;
}

export interface S3Config {
  readonly bucket: string;
  /** S3_REGION, else AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1. */
  readonly region: string;
  /** An S3-compatible endpoint (MinIO, R2, ...); undefined means AWS itself. */
  readonly endpoint: string | undefined;
  readonly forcePathStyle: boolean;
  /** Key prefix inside the bucket, without leading or trailing '/'; '' for the bucket root. */
  readonly prefix: string;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = [];
  const warnings: string[] = [];
  const read = new EnvReader(env, problems);

  const nodeEnv = read.oneOf('NODE_ENV', ['development', 'production', 'test'] as const, 'development');
  const fpsRaw = (env.DEFAULT_FPS ?? '5').trim();
  const maxFps = read.number('MAX_FPS', 60, { min: 0.01, max: 1000 });
  let defaultFps: number | null = null;
  if (fpsRaw !== 'all') {
    const parsed = parseFps(fpsRaw, maxFps);
    if (parsed === undefined) problems.push(`DEFAULT_FPS must be "all" or a number in [${MIN_SAMPLE_FPS}, ${maxFps}], got "${fpsRaw}"`);
    else defaultFps = parsed;
  }

  const modelPath = path.resolve(env.MODEL_PATH ?? 'models/yolov8n.onnx');
  const storageDriver = read.oneOf('STORAGE_DRIVER', ['local', 's3'] as const, 'local');
  const s3 = storageDriver === 's3' ? readS3Config(env, read, problems) : undefined;

  const redisCluster = readRedisCluster(env, problems, warnings);
  const config: Config = {
    nodeEnv,
    port: read.integer('PORT', 3000, { min: 0, max: 65535 }),
    host: env.HOST ?? '0.0.0.0',
    redisUrl: redisCluster || /^rediss?\+cluster:/i.test(env.REDIS_URL ?? '') ? (env.REDIS_URL ?? '') : read.url('REDIS_URL', 'redis://127.0.0.1:6379', ['redis:', 'rediss:']),
    redisCluster,
    // One shard on a single Redis (nothing to spread over); on a cluster, one per primary of the smallest cluster.
    queueShards: read.integer('QUEUE_SHARDS', redisCluster ? 3 : 1, { min: 1, max: 1024 }),
    // On a cluster a failover promotes a replica: a publish only it has not received would be lost.
    queueWaitReplicas: read.integer('QUEUE_WAIT_REPLICAS', redisCluster ? 1 : 0, { min: 0, max: 16 }),
    queueWaitTimeoutMs: read.integer('QUEUE_WAIT_TIMEOUT_MS', 2_000, { min: 10, max: 60_000 }),
    queueFailoverTimeoutMs: read.integer('QUEUE_FAILOVER_TIMEOUT_MS', 30_000, { min: 0, max: 600_000 }),
    queuePrefix: read.string('QUEUE_PREFIX', 'vidsense'),
    databaseUrl: read.url('DATABASE_URL', 'postgres://postgres@127.0.0.1:5432/postgres', ['postgres:', 'postgresql:']),
    storageDir: path.resolve(env.STORAGE_DIR ?? 'data/storage'),
    storageDriver,
    s3,
    keepFrames: read.oneOf('KEEP_FRAMES', ['true', 'false'] as const, 'false') === 'true',
    keepSourceVideo: read.oneOf('KEEP_SOURCE_VIDEO', ['true', 'false'] as const, 'true') === 'true',
    workDir: env.WORK_DIR ? path.resolve(env.WORK_DIR) : os.tmpdir(),
    modelPath,
    detectorEngine: read.oneOf('DETECTOR_ENGINE', ['onnx', 'tfjs', 'auto'] as const, 'onnx'),
    tfjsModelDir: env.TFJS_MODEL_DIR ? path.resolve(env.TFJS_MODEL_DIR) : modelPath.replace(/\.onnx$/, '') + '_web_model',
    tfjsBackend: read.oneOf('TFJS_BACKEND', ['auto', 'wasm', 'cpu', 'node', 'node-gpu'] as const, 'auto'),
    batchSize: read.integer('BATCH_SIZE', 16, { min: 1, max: 256 }),
    maxUploadBytes: read.integer('MAX_UPLOAD_BYTES', 2 * 1024 ** 3, { min: 1 }),
    defaultFps,
    maxFps,
    extractionConcurrency: read.integer('EXTRACTION_CONCURRENCY', 2, { min: 1, max: 64 }),
    probeConcurrency: read.integer('PROBE_CONCURRENCY', 4, { min: 1, max: 64 }),
    workerRoles: parseWorkerRoles(env.WORKER_ROLES, problems),
    confidenceThreshold: read.number('CONFIDENCE_THRESHOLD', 0.25, { min: 0, max: 1 }),
    iouThreshold: read.number('IOU_THRESHOLD', 0.7, { min: 0, max: 1 }),
    jpegQuality: read.integer('JPEG_QUALITY', 3, { min: 2, max: 31 }),
    heartbeatTtlMs: read.integer('HEARTBEAT_TTL_MS', 15_000, { min: 500 }),
    reclaimIntervalMs: read.integer('RECLAIM_INTERVAL_MS', 5_000, { min: 100 }),
    ortThreads: read.integer('ORT_THREADS', 0, { min: 0, max: 256 }),
    onnxFramesPerRun: read.integer('ONNX_FRAMES_PER_RUN', 1, { min: 1, max: 256 }),
    detectLanes: read.integer('DETECT_LANES', 0, { min: 0, max: 64 }),
    workerHealthPort: env.WORKER_HEALTH_PORT ? read.integer('WORKER_HEALTH_PORT', 0, { min: 0, max: 65535 }) : undefined,
    maxAttempts: read.integer('MAX_ATTEMPTS', 5, { min: 1, max: 100 }),
    retryBaseMs: read.integer('RETRY_BASE_MS', 500, { min: 1 }),
    retryMaxMs: read.integer('RETRY_MAX_MS', 30_000, { min: 1 }),
    requireDurableRedis: read.oneOf('REQUIRE_DURABLE_REDIS', ['true', 'false'] as const, 'false') === 'true',
    shutdownTimeoutMs: read.integer('SHUTDOWN_TIMEOUT_MS', 30_000, { min: 100 }),
    logLevel: read.oneOf('LOG_LEVEL', ['error', 'warn', 'info', 'debug'] as const, nodeEnv === 'test' ? 'warn' : 'info'),
    logFormat: read.oneOf('LOG_FORMAT', ['json', 'pretty'] as const, nodeEnv === 'production' ? 'json' : 'pretty'),
    apiKey: readApiKey(env, problems, warnings),
    apiKeyFile: path.resolve(env.API_KEY_FILE || 'data/api-key'),
    sessionTtlMs: read.integer('SESSION_TTL_MS', 7 * 24 * 3600_000, { min: 60_000, max: 366 * 24 * 3600_000 }),
    cookieSecure: read.oneOf('COOKIE_SECURE', ['auto', 'true', 'false'] as const, 'auto'),
    progressPollMs: read.integer('PROGRESS_POLL_MS', 250, { min: 50, max: 60_000 }),
    analyticsMaxBuckets: read.integer('ANALYTICS_MAX_BUCKETS', 10_000, { min: 1, max: 1_000_000 }),
    warnings,
    ffmpegPath: env.FFMPEG_PATH || undefined,
    ffprobePath: env.FFPROBE_PATH || undefined,
    webDir: path.resolve(env.WEB_DIR || 'web/dist'),
    previewCodec: read.oneOf('PREVIEW_CODEC', ['h264', 'vp9', 'off'] as const, 'h264'),
    previewMaxBytes: read.integer('PREVIEW_MAX_BYTES', 1024 ** 3, { min: 1024 }),
    previewTimeoutMs: read.integer('PREVIEW_TIMEOUT_MS', 30 * 60_000, { min: 1000 }),
    previewNiceness: read.integer('PREVIEW_NICENESS', 19, { min: 0, max: 19 }),
    previewCpuPolicy: read.oneOf('PREVIEW_CPU_POLICY', ['idle', 'normal'] as const, 'idle'),
    frameSize: readFrameSize(env.FRAME_SIZE, problems),
    frameDecoder: read.oneOf('FRAME_DECODER', ['auto', 'libjpeg-turbo', 'libvips'] as const, 'auto'),
    modelPrecision: read.oneOf('MODEL_PRECISION', ['fp32', 'int8'] as const, 'fp32'),
    calibrationVideo: path.resolve(env.CALIBRATION_VIDEO || '/usr/share/doc/opencv-doc/examples/data/vtest.avi'),
    calibrationFrames: read.integer('CALIBRATION_FRAMES', 32, { min: 1, max: 1000 }),
    limits: readHostileInputLimits(read, problems),
  };
  if (env.EXTRACTION_LEASE_MS) warnings.push('EXTRACTION_LEASE_MS is no longer used: extraction is a queued job, reclaimed after HEARTBEAT_TTL_MS like any other');
  if (config.modelPrecision === 'int8' && config.detectorEngine !== 'onnx') {
    problems.push(`MODEL_PRECISION=int8 runs on ONNX Runtime only: it needs DETECTOR_ENGINE=onnx (got "${config.detectorEngine}")`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}

/**
 * REDIS_CLUSTER_NODES=host:port,host:port,... or REDIS_URL=redis+cluster://[user[:password]@]host:port,host:port
 * (rediss+cluster:// for TLS). Undefined for a single Redis.
 */
function readRedisCluster(env: Env, problems: string[], warnings: string[]): RedisClusterConfig | undefined {
  const nodesSetting = (env.REDIS_CLUSTER_NODES ?? '').trim();
  const url = (env.REDIS_URL ?? '').trim();
  const urlMatch = /^(rediss?)\+cluster:\/\/(?:([^@/]*)@)?([^/?#]*)\/?$/i.exec(url);
  if (nodesSetting !== '' && urlMatch) {
    problems.push('set either REDIS_CLUSTER_NODES or a redis+cluster:// REDIS_URL, not both');
    return undefined;
  }
  if (nodesSetting === '' && !urlMatch) {
    if (/^rediss?\+cluster:/i.test(url)) problems.push(`REDIS_URL must look like redis+cluster://[user[:password]@]host:port,host:port (got "${url}")`);
    return undefined;
  }
  if (nodesSetting !== '' && url !== '') warnings.push('REDIS_CLUSTER_NODES is set: REDIS_URL is ignored');
  const name = nodesSetting !== '' ? 'REDIS_CLUSTER_NODES' : 'REDIS_URL';
  const list = nodesSetting !== '' ? nodesSetting : urlMatch![3]!;
  const nodes: Array<{ host: string; port: number }> = [];
  for (const entry of list.split(',').map((item) => item.trim())) {
    // host:port, or [ipv6]:port
    const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(entry);
    const port = Number(match?.[2]);
    if (!match || port < 1 || port > 65535) {
      problems.push(`${name} must be a comma-separated list of host:port (got "${entry}")`);
      continue;
    }
    nodes.push({ host: match[1]!.replace(/^\[|\]$/g, ''), port });
  }
  if (nodes.length === 0 && problems.length === 0) problems.push(`${name} names no node`);
  const [username, password] = urlMatch?.[2] !== undefined ? splitCredentials(urlMatch[2]) : [undefined, undefined];
  return { nodes, tls: urlMatch?.[1]?.toLowerCase() === 'rediss', username, password };
}

function splitCredentials(userinfo: string): [string | undefined, string | undefined] {
  const colon = userinfo.indexOf(':');
  const decode = (value: string) => {
    try {
      return value === '' ? undefined : decodeURIComponent(value);
    } catch {
      return value; // not percent-encoded after all
    }
  };
  // As in redis:// URLs: user@, user:password@ or :password@.
  return colon < 0 ? [decode(userinfo), undefined] : [decode(userinfo.slice(0, colon)), decode(userinfo.slice(colon + 1))];
}

function readHostileInputLimits(read: EnvReader, problems: string[]): HostileInputLimits {
  const memory = read.integer('MEDIA_MEMORY_LIMIT_BYTES', 4 * 1024 ** 3, { min: 0 });
  // ffmpeg alone maps about 300 MB of libraries before it decodes anything.
  if (memory !== 0 && memory < 512 * 1024 ** 2) problems.push(`MEDIA_MEMORY_LIMIT_BYTES must be 0 (no ceiling) or at least 536870912 (got ${memory})`);
  const limits: HostileInputLimits = {
    maxDurationS: read.integer('MAX_DURATION_S', 3600, { min: 1, max: MAX_DURATION_LIMIT_S }),
    maxFrames: read.integer('MAX_FRAMES', 18_000, { min: 1, max: 10_000_000 }),
    // ffmpeg's decoders take max_pixels up to INT_MAX, and get a tenth more for alignment (see input-policy.ts).
    maxPixels: read.integer('MAX_PIXELS', 4096 * 2160, { min: 64, max: 1_900_000_000 }),
    mediaMemoryLimitBytes: memory,
    minFreeBytes: read.integer('MIN_FREE_BYTES', 1024 ** 3, { min: 0 }),
    headersTimeoutMs: read.integer('HEADERS_TIMEOUT_MS', 20_000, { min: 100, max: 600_000 }),
    requestTimeoutMs: read.integer('REQUEST_TIMEOUT_MS', 3_600_000, { min: 200, max: 86_400_000 }),
    idleTimeoutMs: read.integer('IDLE_TIMEOUT_MS', 30_000, { min: 100, max: 3_600_000 }),
    maxConcurrentUploads: read.integer('MAX_CONCURRENT_UPLOADS', 32, { min: 1, max: 10_000 }),
    maxUploadsPerClient: read.integer('MAX_UPLOADS_PER_CLIENT', 4, { min: 1, max: 10_000 }),
  };
  if (limits.requestTimeoutMs <= limits.headersTimeoutMs) {
    problems.push(`REQUEST_TIMEOUT_MS (${limits.requestTimeoutMs}) must be larger than HEADERS_TIMEOUT_MS (${limits.headersTimeoutMs})`);
  }
  if (limits.maxUploadsPerClient > limits.maxConcurrentUploads) {
    problems.push(`MAX_UPLOADS_PER_CLIENT (${limits.maxUploadsPerClient}) must not exceed MAX_CONCURRENT_UPLOADS (${limits.maxConcurrentUploads})`);
  }
  return Object.freeze(limits);
}

function readS3Config(env: Env, read: EnvReader, problems: string[]): S3Config {
  const bucket = (env.S3_BUCKET ?? '').trim();
  // S3's bucket naming rules (lower case, digits, dots, hyphens; 3-63 characters).
  if (bucket === '') problems.push('S3_BUCKET is required when STORAGE_DRIVER=s3');
  else if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) problems.push(`S3_BUCKET is not a valid bucket name (got "${bucket}")`);
  // The AWS SDK's own region variables next, so a deployment that sets them for its credentials needs no S3_REGION.
  const regionSetting = (['S3_REGION', 'AWS_REGION', 'AWS_DEFAULT_REGION'] as const).find((name) => (env[name] ?? '').trim() !== '');
  const region = regionSetting ? env[regionSetting]!.trim() : 'us-east-1';
  if (!/^[a-z0-9-]+$/.test(region)) problems.push(`${regionSetting ?? 'S3_REGION'} must look like "us-east-1" (got "${region}")`);
  const endpoint = env.S3_ENDPOINT ? read.url('S3_ENDPOINT', env.S3_ENDPOINT, ['http:', 'https:']) : undefined;
  // Leading and trailing slashes are forgiven; inside, the prefix follows the storage key rules.
  const prefix = (env.S3_PREFIX ?? '').trim().replace(/^\/+|\/+$/g, '');
  if (prefix !== '' && (prefix.length > 512 || /[\\\0]/.test(prefix) || prefix.split('/').some((segment) => segment === '' || segment === '.' || segment === '..'))) {
    problems.push(`S3_PREFIX must be '/'-separated names without empty, "." or ".." segments or backslashes (got "${env.S3_PREFIX}")`);
  }
  return {
    bucket,
    region,
    endpoint,
    forcePathStyle: read.oneOf('S3_FORCE_PATH_STYLE', ['true', 'false'] as const, 'false') === 'true',
    prefix,
  };
}

/**
 * API_KEY, or the deprecated ADMIN_TOKEN (the old dead-letter token) as an alias: its holder keeps admin
 * access under the same value. Printable ASCII without spaces (it travels in a Bearer header), 16 to 512 characters.
 */
function readApiKey(env: Env, problems: string[], warnings: string[]): string | undefined {
  const apiKey = env.API_KEY || undefined;
  const adminToken = env.ADMIN_TOKEN || undefined;
  if (adminToken !== undefined) {
    if (apiKey !== undefined && apiKey !== adminToken) {
      problems.push('ADMIN_TOKEN is deprecated and differs from API_KEY; remove ADMIN_TOKEN (API_KEY is the admin key)');
      return apiKey;
    }
    warnings.push('ADMIN_TOKEN is deprecated: it is now the admin API key; set API_KEY to the same value instead');
  }
  const key = apiKey ?? adminToken;
  const name = apiKey !== undefined ? 'API_KEY' : 'ADMIN_TOKEN';
  if (key !== undefined && !/^[\x21-\x7e]{16,512}$/.test(key)) {
    problems.push(`${name} must be 16 to 512 printable characters without spaces (got ${key.length} characters)`);
  }
  return key;
}

/**
 * WORKER_ROLES: a comma-separated list of job kinds (extract, detect), each at most once; default both.
 * An extract-only worker never loads the model; a detect-only worker never runs ffmpeg.
 */
export function parseWorkerRoles(raw: string | undefined, problems: string[]): readonly JobKind[] {
  const value = (raw ?? '').trim();
  if (value === '') return JOB_KINDS;
  const roles = value.split(',').map((role) => role.trim());
  const unknown = roles.filter((role) => !(JOB_KINDS as readonly string[]).includes(role));
  if (unknown.length > 0 || roles.length === 0) {
    problems.push(`WORKER_ROLES must be a comma-separated list of ${JOB_KINDS.join(', ')} (got "${raw}")`);
    return JOB_KINDS;
  }
  if (new Set(roles).size !== roles.length) {
    problems.push(`WORKER_ROLES names a role twice (got "${raw}")`);
    return JOB_KINDS;
  }
  // In a fixed order, so logs and checks read the same whatever order the setting lists them in.
  return Object.freeze(JOB_KINDS.filter((kind) => roles.includes(kind)));
}

/** FRAME_SIZE: "source", a side N (an N x N box) or WIDTHxHEIGHT, each 32 to 8192 px; default 640 (the stock models' input). */
function readFrameSize(raw: string | undefined, problems: string[]): Config['frameSize'] {
  const value = (raw ?? '').trim() || '640';
  if (value === 'source') return null;
  const match = /^(\d+)(?:x(\d+))?$/.exec(value);
  const [width, height] = match ? [Number(match[1]), Number(match[2] ?? match[1])] : [NaN, NaN];
  if (!(width >= 32 && width <= 8192 && height >= 32 && height <= 8192)) {
    problems.push(`FRAME_SIZE must be "source", a size N or WIDTHxHEIGHT, from 32 to 8192 px (got "${raw}")`);
    return { width: 640, height: 640 };
  }
  return { width, height };
}

/** Parses a frames-per-second request: a number from MIN_SAMPLE_FPS up to max. */
export function parseFps(raw: string, max: number): number | undefined {
  if (!/^\d+(\.\d+)?$/.test(raw)) return undefined;
  const value = Number(raw);
  return value >= MIN_SAMPLE_FPS && value <= max ? value : undefined;
}

class EnvReader {
  constructor(
    private readonly env: Env,
    private readonly problems: string[],
  ) {}

  string(name: string, fallback: string): string {
    const value = this.env[name];
    if (value === undefined || value === '') return fallback;
    if (!/^[A-Za-z0-9_.:-]+$/.test(value)) this.problems.push(`${name} may hold only letters, digits and _.:- (got "${value}")`);
    return value;
  }

  integer(name: string, fallback: number, range: { min?: number; max?: number }): number {
    const value = this.number(name, fallback, range);
    if (!Number.isInteger(value)) this.problems.push(`${name} must be a whole number (got "${this.env[name]}")`);
    return value;
  }

  number(name: string, fallback: number, { min = -Infinity, max = Infinity }: { min?: number; max?: number }): number {
    const raw = this.env[name];
    if (raw === undefined || raw.trim() === '') return fallback;
    const value = Number(raw);
    if (!Number.isFinite(value) || value < min || value > max) {
      this.problems.push(`${name} must be a number in [${min}, ${max}] (got "${raw}")`);
      return fallback;
    }
    return value;
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    const raw = this.env[name];
    if (raw === undefined || raw === '') return fallback;
    if (!(allowed as readonly string[]).includes(raw)) {
      this.problems.push(`${name} must be one of ${allowed.join(', ')} (got "${raw}")`);
      return fallback;
    }
    return raw as T;
  }

  url(name: string, fallback: string, protocols: string[]): string {
    const raw = this.env[name] || fallback;
    try {
      const url = new URL(raw);
      if (!protocols.includes(url.protocol)) this.problems.push(`${name} must use ${protocols.join(' or ')} (got "${url.protocol}")`);
    } catch {
      this.problems.push(`${name} is not a valid URL`);
    }
    return raw;
  }
}

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError, loadConfig, parseFps } from '../../src/config.ts';

describe('loadConfig', () => {
  it('gives working defaults on an empty environment', () => {
    const config = loadConfig({});
    assert.equal(config.port, 3000);
    assert.equal(config.redisUrl, 'redis://127.0.0.1:6379');
    assert.equal(config.databaseUrl, 'postgres://postgres@127.0.0.1:5432/postgres');
    assert.equal(config.batchSize, 16);
    assert.equal(config.defaultFps, 5);
    assert.equal(config.confidenceThreshold, 0.25);
    assert.equal(config.iouThreshold, 0.7);
    assert.ok(Object.isFrozen(config));
  });

  it('reads overrides', () => {
    const config = loadConfig({ PORT: '8080', BATCH_SIZE: '4', DEFAULT_FPS: 'all', MAX_UPLOAD_BYTES: '1000', NODE_ENV: 'production' });
    assert.equal(config.port, 8080);
    assert.equal(config.batchSize, 4);
    assert.equal(config.defaultFps, null);
    assert.equal(config.maxUploadBytes, 1000);
    assert.equal(config.logFormat, 'json');
  });

  it('names every bad value in one error', () => {
    assert.throws(
      () => loadConfig({ PORT: 'eighty', BATCH_SIZE: '0', REDIS_URL: 'http://x', DEFAULT_FPS: '-2', QUEUE_PREFIX: 'a b' }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        const text = error.problems.join('\n');
        for (const name of ['PORT', 'BATCH_SIZE', 'REDIS_URL', 'DEFAULT_FPS', 'QUEUE_PREFIX']) assert.match(text, new RegExp(name));
        assert.equal(error.problems.length, 5);
        return true;
      },
    );
  });

  it('reads the detector engine and tfjs backend, native backends and auto included', () => {
    const defaults = loadConfig({});
    assert.equal(defaults.detectorEngine, 'onnx');
    assert.equal(defaults.tfjsBackend, 'auto');
    assert.equal(loadConfig({ TFJS_BACKEND: 'wasm' }).tfjsBackend, 'wasm');
    const config = loadConfig({ DETECTOR_ENGINE: 'auto', TFJS_BACKEND: 'node-gpu' });
    assert.equal(config.detectorEngine, 'auto');
    assert.equal(config.tfjsBackend, 'node-gpu');
    assert.equal(loadConfig({ DETECTOR_ENGINE: 'tfjs', TFJS_BACKEND: 'node' }).tfjsBackend, 'node');
    assert.throws(() => loadConfig({ DETECTOR_ENGINE: 'gpu', TFJS_BACKEND: 'webgl' }), (error: ConfigError) => {
      assert.match(error.message, /DETECTOR_ENGINE must be one of onnx, tfjs, auto \(got "gpu"\)/);
      assert.match(error.message, /TFJS_BACKEND must be one of auto, wasm, cpu, node, node-gpu \(got "webgl"\)/);
      return true;
    });
  });

  it('reads ONNX frames per run and the worker health port (off unless set)', () => {
    const defaults = loadConfig({});
    assert.equal(defaults.onnxFramesPerRun, 1);
    assert.equal(defaults.workerHealthPort, undefined);
    const config = loadConfig({ ONNX_FRAMES_PER_RUN: '8', WORKER_HEALTH_PORT: '3001' });
    assert.equal(config.onnxFramesPerRun, 8);
    assert.equal(config.workerHealthPort, 3001);
    assert.throws(() => loadConfig({ ONNX_FRAMES_PER_RUN: '0', WORKER_HEALTH_PORT: '70000' }), (error: ConfigError) => {
      assert.deepEqual(error.problems.map((p) => p.split(' ')[0]), ['ONNX_FRAMES_PER_RUN', 'WORKER_HEALTH_PORT']);
      return true;
    });
  });

  it('reads FRAME_SIZE: a 640 box by default, N, WIDTHxHEIGHT or source', () => {
    assert.deepEqual(loadConfig({}).frameSize, { width: 640, height: 640 });
    assert.deepEqual(loadConfig({ FRAME_SIZE: '320' }).frameSize, { width: 320, height: 320 });
    assert.deepEqual(loadConfig({ FRAME_SIZE: '640x384' }).frameSize, { width: 640, height: 384 });
    assert.equal(loadConfig({ FRAME_SIZE: 'source' }).frameSize, null);
    for (const bad of ['0', '16', '9000', '640x', 'x480', '640*480', 'big']) {
      assert.throws(() => loadConfig({ FRAME_SIZE: bad }), /FRAME_SIZE must be "source", a size N or WIDTHxHEIGHT, from 32 to 8192 px/, bad);
    }
  });

  it('reads FRAME_DECODER: auto by default, libjpeg-turbo or libvips', () => {
    assert.equal(loadConfig({}).frameDecoder, 'auto');
    assert.equal(loadConfig({ FRAME_DECODER: 'libvips' }).frameDecoder, 'libvips');
    assert.equal(loadConfig({ FRAME_DECODER: 'libjpeg-turbo' }).frameDecoder, 'libjpeg-turbo');
    assert.throws(() => loadConfig({ FRAME_DECODER: 'opencv' }), /FRAME_DECODER must be one of auto, libjpeg-turbo, libvips/);
  });

  it('reads MODEL_PRECISION (fp32 by default; int8 on ONNX Runtime only) and the calibration settings', () => {
    const defaults = loadConfig({});
    assert.equal(defaults.modelPrecision, 'fp32');
    assert.equal(defaults.calibrationVideo, '/usr/share/doc/opencv-doc/examples/data/vtest.avi');
    assert.equal(defaults.calibrationFrames, 32);
    const int8 = loadConfig({ MODEL_PRECISION: 'int8', CALIBRATION_VIDEO: 'media/street.mp4', CALIBRATION_FRAMES: '8' });
    assert.equal(int8.modelPrecision, 'int8');
    assert.equal(int8.calibrationVideo, path.resolve('media/street.mp4'));
    assert.equal(int8.calibrationFrames, 8);
    assert.throws(() => loadConfig({ MODEL_PRECISION: 'int4' }), /MODEL_PRECISION must be one of fp32, int8/);
    assert.throws(() => loadConfig({ CALIBRATION_FRAMES: '0' }), /CALIBRATION_FRAMES must be a number in \[1, 1000\]/);
    assert.throws(() => loadConfig({ MODEL_PRECISION: 'int8', DETECTOR_ENGINE: 'tfjs' }), /MODEL_PRECISION=int8 runs on ONNX Runtime only: it needs DETECTOR_ENGINE=onnx/);
  });

  it('reads PROBE_CONCURRENCY (default 4, 1 to 64)', () => {
    assert.equal(loadConfig({}).probeConcurrency, 4);
    assert.equal(loadConfig({ PROBE_CONCURRENCY: '1' }).probeConcurrency, 1);
    for (const bad of ['0', '65', '1.5', 'many']) assert.throws(() => loadConfig({ PROBE_CONCURRENCY: bad }), /PROBE_CONCURRENCY must be/, bad);
  });

  it('refuses a fractional integer setting', () => {
    assert.throws(() => loadConfig({ BATCH_SIZE: '2.5' }), /BATCH_SIZE must be a whole number/);
  });
});

describe('loadConfig: web app and previews', () => {
  it('defaults to web/dist, H.264 previews of at most 1 GiB made within 30 minutes at nice 19 under SCHED_IDLE', () => {
    const config = loadConfig({});
    assert.equal(config.webDir, path.resolve('web/dist'));
    assert.equal(config.previewCodec, 'h264');
    assert.equal(config.previewMaxBytes, 1024 ** 3);
    assert.equal(config.previewTimeoutMs, 1_800_000);
    assert.equal(config.previewNiceness, 19);
    assert.equal(config.previewCpuPolicy, 'idle');
  });

  it('reads overrides, off included, and names every bad value', () => {
    const config = loadConfig({ WEB_DIR: '/srv/web', PREVIEW_CODEC: 'off', PREVIEW_MAX_BYTES: '1048576', PREVIEW_TIMEOUT_MS: '60000', PREVIEW_NICENESS: '0', PREVIEW_CPU_POLICY: 'normal' });
    assert.deepEqual(
      [config.webDir, config.previewCodec, config.previewMaxBytes, config.previewTimeoutMs, config.previewNiceness, config.previewCpuPolicy],
      ['/srv/web', 'off', 1_048_576, 60_000, 0, 'normal'],
    );
    assert.equal(loadConfig({ PREVIEW_CODEC: 'vp9' }).previewCodec, 'vp9');
    assert.throws(
      () => loadConfig({ PREVIEW_CODEC: 'av1', PREVIEW_MAX_BYTES: '10', PREVIEW_TIMEOUT_MS: '1.5', PREVIEW_NICENESS: '20', PREVIEW_CPU_POLICY: 'realtime' }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.deepEqual(error.problems.map((problem) => problem.split(' ')[0]), ['PREVIEW_CODEC', 'PREVIEW_MAX_BYTES', 'PREVIEW_TIMEOUT_MS', 'PREVIEW_NICENESS', 'PREVIEW_CPU_POLICY']);
        return true;
      },
    );
  });
});

describe('loadConfig: storage', () => {
  it('defaults to local storage, frames deleted after detection, source videos kept', () => {
    const config = loadConfig({});
    assert.equal(config.storageDriver, 'local');
    assert.equal(config.s3, undefined);
    assert.equal(config.keepFrames, false);
    assert.equal(config.keepSourceVideo, true);
    assert.ok(config.workDir.length > 0);
  });

  it('reads the S3 settings, with defaults for all but the bucket', () => {
    const config = loadConfig({ STORAGE_DRIVER: 's3', S3_BUCKET: 'videos-prod', KEEP_FRAMES: 'true', KEEP_SOURCE_VIDEO: 'false', WORK_DIR: '/var/tmp/vidsense' });
    assert.deepEqual(config.s3, { bucket: 'videos-prod', region: 'us-east-1', endpoint: undefined, forcePathStyle: false, prefix: '' });
    assert.equal(config.keepFrames, true);
    assert.equal(config.keepSourceVideo, false);
    assert.equal(config.workDir, '/var/tmp/vidsense');
    const custom = loadConfig({ STORAGE_DRIVER: 's3', S3_BUCKET: 'b12', S3_REGION: 'eu-west-3', S3_ENDPOINT: 'http://127.0.0.1:9000', S3_FORCE_PATH_STYLE: 'true', S3_PREFIX: '/team/a/' });
    assert.deepEqual(custom.s3, { bucket: 'b12', region: 'eu-west-3', endpoint: 'http://127.0.0.1:9000', forcePathStyle: true, prefix: 'team/a' });
  });

  it("takes the S3 region from S3_REGION, else the AWS SDK's AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1", () => {
    const s3 = { STORAGE_DRIVER: 's3', S3_BUCKET: 'videos' };
    const region = (env: Record<string, string>) => loadConfig({ ...s3, ...env }).s3!.region;
    assert.equal(region({ S3_REGION: 'eu-west-1', AWS_REGION: 'us-west-2', AWS_DEFAULT_REGION: 'ap-south-1' }), 'eu-west-1');
    assert.equal(region({ AWS_REGION: 'us-west-2', AWS_DEFAULT_REGION: 'ap-south-1' }), 'us-west-2');
    assert.equal(region({ AWS_DEFAULT_REGION: 'ap-south-1' }), 'ap-south-1');
    // Empty values are unset: compose passes S3_REGION through as "" when the host has none.
    assert.equal(region({ S3_REGION: '', AWS_REGION: ' ', AWS_DEFAULT_REGION: 'ca-central-1' }), 'ca-central-1');
    assert.equal(region({ S3_REGION: '', AWS_REGION: '' }), 'us-east-1');
    // A bad value is reported under the variable it came from.
    assert.throws(() => loadConfig({ ...s3, AWS_REGION: 'EU WEST' }), /AWS_REGION must look like "us-east-1" \(got "EU WEST"\)/);
  });

  it('requires S3_BUCKET with STORAGE_DRIVER=s3, and names every bad storage value', () => {
    assert.throws(() => loadConfig({ STORAGE_DRIVER: 's3' }), /S3_BUCKET is required when STORAGE_DRIVER=s3/);
    assert.throws(
      () => loadConfig({ STORAGE_DRIVER: 's3', S3_BUCKET: 'Bad_Bucket', S3_ENDPOINT: 'ftp://x', S3_FORCE_PATH_STYLE: 'yes', S3_PREFIX: 'a/../b', KEEP_FRAMES: '1', S3_REGION: 'EU WEST' }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        const text = error.problems.join('\n');
        for (const name of ['S3_BUCKET', 'S3_ENDPOINT', 'S3_FORCE_PATH_STYLE', 'S3_PREFIX', 'KEEP_FRAMES', 'S3_REGION']) assert.match(text, new RegExp(name));
        assert.equal(error.problems.length, 6);
        return true;
      },
    );
    assert.throws(() => loadConfig({ STORAGE_DRIVER: 'gcs' }), /STORAGE_DRIVER must be one of local, s3/);
  });

  it('ignores the S3 settings with local storage', () => {
    assert.equal(loadConfig({ S3_PREFIX: 'a/../b' }).s3, undefined);
  });
});

describe('loadConfig: hostile-input limits', () => {
  it('has safe defaults', () => {
    assert.deepEqual(loadConfig({}).limits, {
      maxDurationS: 3600,
      maxFrames: 18_000,
      maxPixels: 4096 * 2160,
      mediaMemoryLimitBytes: 4 * 1024 ** 3,
      minFreeBytes: 1024 ** 3,
      headersTimeoutMs: 20_000,
      requestTimeoutMs: 3_600_000,
      idleTimeoutMs: 30_000,
      maxConcurrentUploads: 32,
      maxUploadsPerClient: 4,
    });
    assert.ok(Object.isFrozen(loadConfig({}).limits));
  });

  it('reads overrides; 0 turns the memory ceiling and the free-space check off', () => {
    const { limits } = loadConfig({ MAX_DURATION_S: '60', MAX_FRAMES: '100', MAX_PIXELS: '76800', MEDIA_MEMORY_LIMIT_BYTES: '0', MIN_FREE_BYTES: '0', IDLE_TIMEOUT_MS: '1000' });
    assert.deepEqual([limits.maxDurationS, limits.maxFrames, limits.maxPixels, limits.mediaMemoryLimitBytes, limits.minFreeBytes, limits.idleTimeoutMs], [60, 100, 76800, 0, 0, 1000]);
  });

  it('refuses values that would defeat a limit or break the service, naming each', () => {
    const bad = {
      MAX_DURATION_S: '2000001', // frame times (integer milliseconds) would overflow
      MAX_FRAMES: '0',
      MAX_PIXELS: '1e12',
      MEDIA_MEMORY_LIMIT_BYTES: '1000', // below what ffmpeg maps before decoding anything
      MIN_FREE_BYTES: '-1',
      IDLE_TIMEOUT_MS: 'soon',
      MAX_CONCURRENT_UPLOADS: '0',
    };
    assert.throws(() => loadConfig(bad), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      for (const name of Object.keys(bad)) assert.match(error.message, new RegExp(name));
      assert.equal(error.problems.length, Object.keys(bad).length);
      return true;
    });
  });

  it('refuses settings that contradict each other', () => {
    assert.throws(() => loadConfig({ HEADERS_TIMEOUT_MS: '5000', REQUEST_TIMEOUT_MS: '5000' }), /REQUEST_TIMEOUT_MS \(5000\) must be larger than HEADERS_TIMEOUT_MS/);
    assert.throws(() => loadConfig({ MAX_CONCURRENT_UPLOADS: '2', MAX_UPLOADS_PER_CLIENT: '3' }), /MAX_UPLOADS_PER_CLIENT \(3\) must not exceed MAX_CONCURRENT_UPLOADS/);
  });

  it('refuses a default sampling below one frame per 100 s', () => {
    assert.throws(() => loadConfig({ DEFAULT_FPS: '0.001' }), /DEFAULT_FPS must be "all" or a number in \[0.01, 60\]/);
  });
});

describe('loadConfig: keys, sessions, progress, analytics', () => {
  it('defaults: no API_KEY, data/api-key, 7-day sessions, auto Secure cookie, 250 ms progress polls, 10,000 buckets', () => {
    const config = loadConfig({});
    assert.equal(config.apiKey, undefined);
    assert.match(config.apiKeyFile, /data\/api-key$/);
    assert.equal(config.sessionTtlMs, 7 * 24 * 3600_000);
    assert.equal(config.cookieSecure, 'auto');
    assert.equal(config.progressPollMs, 250);
    assert.equal(config.analyticsMaxBuckets, 10_000);
    assert.deepEqual(config.warnings, []);
  });

  it('API_KEY must be 16 to 512 printable characters without spaces', () => {
    assert.equal(loadConfig({ API_KEY: 'test-admin-token' }).apiKey, 'test-admin-token');
    for (const bad of ['short-key', 'sixteen chars ok?', 'x'.repeat(513), 'tab\tin-the-middle-of-it']) {
      assert.throws(() => loadConfig({ API_KEY: bad }), /API_KEY must be 16 to 512 printable characters/, JSON.stringify(bad));
    }
  });

  it('ADMIN_TOKEN is a deprecated alias of API_KEY: used with a warning, refused when it differs', () => {
    const alias = loadConfig({ ADMIN_TOKEN: 'an-old-admin-token' });
    assert.equal(alias.apiKey, 'an-old-admin-token');
    assert.match(alias.warnings.join('\n'), /ADMIN_TOKEN is deprecated.*set API_KEY/);
    assert.equal(loadConfig({ ADMIN_TOKEN: 'the-same-token-value', API_KEY: 'the-same-token-value' }).apiKey, 'the-same-token-value');
    assert.throws(() => loadConfig({ ADMIN_TOKEN: 'an-old-admin-token', API_KEY: 'a-new-admin-token' }), /ADMIN_TOKEN is deprecated and differs from API_KEY/);
    assert.throws(() => loadConfig({ ADMIN_TOKEN: 'short' }), /ADMIN_TOKEN must be 16 to 512/);
  });

  it('refuses out-of-range session, cookie, poll and bucket settings, naming each', () => {
    assert.throws(() => loadConfig({ SESSION_TTL_MS: '1000', COOKIE_SECURE: 'yes', PROGRESS_POLL_MS: '10', ANALYTICS_MAX_BUCKETS: '0' }), (error: ConfigError) => {
      assert.deepEqual(error.problems.map((p) => p.split(' ')[0]), ['SESSION_TTL_MS', 'COOKIE_SECURE', 'PROGRESS_POLL_MS', 'ANALYTICS_MAX_BUCKETS']);
      return true;
    });
  });
});

describe('loadConfig: Redis Cluster and queue shards', () => {
  it('defaults to one Redis, one shard, no WAIT', () => {
    const config = loadConfig({});
    assert.equal(config.redisCluster, undefined);
    assert.equal(config.queueShards, 1);
    assert.equal(config.queueWaitReplicas, 0);
    assert.equal(config.queueWaitTimeoutMs, 2000);
    assert.equal(config.queueFailoverTimeoutMs, 30_000);
  });

  it('reads REDIS_CLUSTER_NODES (IPv6 included); on a cluster 3 shards and WAIT for 1 replica by default', () => {
    const config = loadConfig({ REDIS_CLUSTER_NODES: 'redis-0:6379, 10.0.0.2:7000,[::1]:7001' });
    assert.deepEqual(config.redisCluster, {
      nodes: [
        { host: 'redis-0', port: 6379 },
        { host: '10.0.0.2', port: 7000 },
        { host: '::1', port: 7001 },
      ],
      tls: false,
      username: undefined,
      password: undefined,
    });
    assert.equal(config.queueShards, 3);
    assert.equal(config.queueWaitReplicas, 1);
  });

  it('reads a redis+cluster:// or rediss+cluster:// REDIS_URL with credentials', () => {
    const config = loadConfig({ REDIS_URL: 'rediss+cluster://queue:s%40cret@a:1,b:2', QUEUE_SHARDS: '6', QUEUE_WAIT_REPLICAS: '0' });
    assert.deepEqual(config.redisCluster, { nodes: [{ host: 'a', port: 1 }, { host: 'b', port: 2 }], tls: true, username: 'queue', password: 's@cret' });
    assert.equal(config.queueShards, 6);
    assert.equal(config.queueWaitReplicas, 0);
    assert.deepEqual(loadConfig({ REDIS_URL: 'redis+cluster://:pw@a:1' }).redisCluster?.password, 'pw');
  });

  it('refuses bad node lists, both forms at once, and out-of-range queue settings, naming each', () => {
    for (const [env, name] of [
      [{ REDIS_CLUSTER_NODES: 'a:1,b' }, 'REDIS_CLUSTER_NODES'],
      [{ REDIS_CLUSTER_NODES: 'a:70000' }, 'REDIS_CLUSTER_NODES'],
      [{ REDIS_CLUSTER_NODES: ' , ' }, 'REDIS_CLUSTER_NODES'],
      [{ REDIS_URL: 'redis+cluster://a:1/db?x' }, 'REDIS_URL'],
      [{ REDIS_URL: 'redis+cluster://a:1', REDIS_CLUSTER_NODES: 'b:2' }, 'set'],
      [{ QUEUE_SHARDS: '0' }, 'QUEUE_SHARDS'],
      [{ QUEUE_SHARDS: '1025' }, 'QUEUE_SHARDS'],
      [{ QUEUE_SHARDS: '2.5' }, 'QUEUE_SHARDS'],
      [{ QUEUE_WAIT_REPLICAS: '-1' }, 'QUEUE_WAIT_REPLICAS'],
      [{ QUEUE_WAIT_TIMEOUT_MS: '0' }, 'QUEUE_WAIT_TIMEOUT_MS'],
      [{ QUEUE_FAILOVER_TIMEOUT_MS: 'soon' }, 'QUEUE_FAILOVER_TIMEOUT_MS'],
    ] as const) {
      assert.throws(
        () => loadConfig(env),
        (error: unknown) => error instanceof ConfigError && error.problems.length >= 1 && error.problems[0]!.startsWith(name),
        JSON.stringify(env),
      );
    }
  });

  it('warns that REDIS_URL is ignored when REDIS_CLUSTER_NODES is set', () => {
    assert.match(loadConfig({ REDIS_CLUSTER_NODES: 'a:1', REDIS_URL: 'redis://x:6379' }).warnings.join('\n'), /REDIS_URL is ignored/);
  });
});

describe('.env.example', () => {
  const lines = readFileSync('.env.example', 'utf8')
    .split('\n')
    .map((line) => /^(#\s?)?([A-Z][A-Z0-9_]*)=(.*)$/.exec(line))
    .filter((match) => match !== null);

  it('lists every variable loadConfig reads (set, or commented out)', () => {
    const read = new Set<string>();
    for (const env of [{}, { STORAGE_DRIVER: 's3', S3_BUCKET: 'videos' }]) {
      loadConfig(new Proxy(env as Record<string, string>, { get: (target, name) => (typeof name === 'string' && read.add(name), Reflect.get(target, name)) }));
    }
    const listed = new Set(lines.map((match) => match[2]!));
    assert.deepEqual([...read].filter((name) => !listed.has(name)).sort(), []);
  });

  it('sets only defaults: loading its values gives the same configuration as an empty environment', () => {
    const active = Object.fromEntries(lines.filter((match) => match[1] === undefined).map((match) => [match[2]!, match[3]!]));
    assert.equal(active.PROBE_CONCURRENCY, '4');
    assert.equal(active.LOG_FORMAT, undefined, 'LOG_FORMAT is left to NODE_ENV');
    assert.deepEqual(loadConfig(active), loadConfig({}));
  });
});

describe('parseFps', () => {
  it('accepts positive decimals up to the maximum', () => {
    assert.equal(parseFps('5', 60), 5);
    assert.equal(parseFps('0.5', 60), 0.5);
    assert.equal(parseFps('60', 60), 60);
  });
  it('refuses zero, negatives, too large, exponents and junk', () => {
    for (const raw of ['0', '-1', '61', '1e3', 'abc', '', '5fps', 'Infinity', 'NaN']) assert.equal(parseFps(raw, 60), undefined, raw);
  });
  it('refuses rates below one frame per 100 s (fps=0.0000001 used to end "completed" with no frame)', () => {
    assert.equal(parseFps('0.01', 60), 0.01);
    for (const raw of ['0.0099', '0.0000001']) assert.equal(parseFps(raw, 60), undefined, raw);
  });
});

import assert from 'node:assert/strict';
import { readFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { parse } from 'yaml';
import { loadConfig } from '../../src/config.ts';

/** The parts of `docker compose config`'s rendered model these tests read. */
interface RenderedService {
  image?: string;
  build?: { context: string; dockerfile: string; target?: string; args?: Record<string, string> };
  command?: string[];
  environment?: Record<string, string | null>;
  ports?: unknown[];
  container_name?: string;
  volumes?: Array<{ type?: string; source: string; target: string; read_only?: boolean } | string>;
  healthcheck?: { test?: string[]; disable?: boolean };
  depends_on?: Record<string, { condition: string }>;
  deploy?: { resources?: { reservations?: { devices?: Array<{ driver?: string; count?: unknown; device_ids?: string[]; capabilities?: string[] }> } } };
}
interface RenderedModel {
  services: Record<string, RenderedService>;
  volumes?: Record<string, unknown>;
}

const REPO = process.cwd();
/** Settings the compose files require (no default): every rendering below gets them. */
const REQUIRED_SETTINGS = { API_KEY: 'compose-test-admin-key' };
const requiredLines = Object.entries(REQUIRED_SETTINGS).map(([name, value]) => `${name}=${value}\n`).join('');
// Read by libraries, not by loadConfig: the AWS SDK's credential chain, and postgres.js (a password kept out of DATABASE_URL).
const LIBRARY_VARIABLES = new Set(['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE', 'PGPASSWORD']);

/** `docker compose` (the plugin) when it is there, else Debian's `docker-compose`; the test set-up installs the latter. */
async function composeCli(): Promise<string[]> {
  if ((await execa('docker', ['compose', 'version'], { reject: false })).exitCode === 0) return ['docker', 'compose'];
  if ((await execa('docker-compose', ['version'], { reject: false })).exitCode === 0) return ['docker-compose'];
  throw new Error('neither `docker compose` nor `docker-compose` is installed (Debian: apt-get install docker-compose; `npm test` does it)');
}

function volumeOf(service: RenderedService, target: string): { source: string; read_only?: boolean } | undefined {
  for (const volume of service.volumes ?? []) {
    if (typeof volume === 'string') {
      const [source, mountTarget, mode] = volume.split(':');
      if (mountTarget === target) return { source: source!, read_only: mode === 'ro' };
    } else if (volume.target === target) {
      return volume;
    }
  }
  return undefined;
}

/** The ENV settings of one stage of a Dockerfile (`ENV A=1 B=2`, continued lines joined). */
function stageEnvironment(dockerfile: string, stage: string): Record<string, string> {
  const lines = dockerfile.replace(/\\\n/g, ' ').split('\n');
  const start = lines.findIndex((line) => new RegExp(`^FROM \\S+ AS ${stage}$`).test(line));
  assert.ok(start >= 0, `docker/Dockerfile has a stage named ${stage}`);
  const environment: Record<string, string> = {};
  for (const line of lines.slice(start + 1)) {
    if (line.startsWith('FROM ')) break;
    if (!line.startsWith('ENV ')) continue;
    for (const pair of line.slice(4).trim().split(/\s+/)) {
      const [key, ...value] = pair.split('=');
      environment[key!] = value.join('=');
    }
  }
  return environment;
}

/** The environment variable names loadConfig reads, for this environment and for its S3 variant. */
function variablesRead(environment: Record<string, string>): Set<string> {
  const read = new Set<string>();
  for (const variant of [environment, { ...environment, STORAGE_DRIVER: 's3', S3_BUCKET: 'bucket' }]) {
    const recording = new Proxy(variant, {
      get(target, name) {
        if (typeof name === 'string') read.add(name);
        return Reflect.get(target, name);
      },
    });
    loadConfig(recording);
  }
  return read;
}

describe('compose files: validated by the compose CLI, rendered model checked', function () {
  this.timeout(60_000);
  let cli: string[];
  let requiredEnvFile: string;
  let tmp: string;
  const models: Record<'cpu' | 'gpu', RenderedModel> = {} as Record<'cpu' | 'gpu', RenderedModel>;

  async function render(files: string | string[], envFile = requiredEnvFile): Promise<{ exitCode: number; stdout: string; stderr: string }> {
    // An explicit env file (only the required settings by default) and no inherited settings: the defaults
    // written in the files are what is checked, whatever .env or shell variables this machine has.
    const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp' };
    const fileArgs = [files].flat().flatMap((file) => ['-f', file]);
    const result = await execa(cli[0]!, [...cli.slice(1), '--env-file', envFile, ...fileArgs, 'config'], { cwd: REPO, env, extendEnv: false, reject: false });
    return { exitCode: result.exitCode ?? -1, stdout: result.stdout, stderr: result.stderr };
  }

  before(async () => {
    cli = await composeCli();
    tmp = await mkdtemp(path.join(os.tmpdir(), 'vidsense-compose-'));
    requiredEnvFile = path.join(tmp, 'required.env');
    await writeFile(requiredEnvFile, requiredLines);
    for (const profile of ['cpu', 'gpu'] as const) {
      const result = await render(`compose.${profile}.yml`);
      assert.equal(result.exitCode, 0, `compose.${profile}.yml does not validate:\n${result.stderr}`);
      models[profile] = parse(result.stdout) as RenderedModel;
    }
  });

  after(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('refuses to render without API_KEY, and gives it to the api alone (workers need no key)', async () => {
    const empty = path.join(tmp, 'empty.env');
    await writeFile(empty, '');
    for (const profile of ['cpu', 'gpu'] as const) {
      const refused = await render(`compose.${profile}.yml`, empty);
      assert.notEqual(refused.exitCode, 0, `compose.${profile}.yml renders without API_KEY`);
      assert.match(refused.stderr, /API_KEY/);
      const { services } = models[profile];
      assert.equal(loadConfig(Object.fromEntries(Object.entries(services.api!.environment ?? {}).map(([k, v]) => [k, v ?? '']))).apiKey, REQUIRED_SETTINGS.API_KEY);
      assert.equal(services.worker!.environment?.API_KEY, undefined);
    }
  });

  it('the validator is real: a file with a misspelt service option is refused', async () => {
    const broken = path.join(tmp, 'broken.yml');
    await writeFile(broken, 'services:\n  api:\n    image: vidsense-api\n    enviroment: { PORT: "3000" }\n');
    const result = await render(broken);
    assert.notEqual(result.exitCode, 0);
    assert.match(result.stderr, /enviroment/);
  });

  for (const profile of ['cpu', 'gpu'] as const) {
    describe(`compose.${profile}.yml`, () => {
      it('runs redis, postgres, the api, a scalable extractor and a scalable worker, each built from docker/Dockerfile at its own stage', async () => {
        const { services } = models[profile];
        assert.deepEqual(Object.keys(services).sort(), ['api', 'extractor', 'postgres', 'redis', 'worker']);
        const dockerfile = await readFile(path.join(REPO, 'docker/Dockerfile'), 'utf8');
        const stages = new Set([...dockerfile.matchAll(/^FROM \S+ AS (\S+)$/gm)].map((m) => m[1]));
        // Extraction is ffmpeg on the CPU in both profiles: the CPU worker image, which has ffmpeg.
        const targets = { api: 'api', extractor: 'worker-cpu', worker: profile === 'gpu' ? 'worker-gpu' : 'worker-cpu' };
        for (const [name, target] of Object.entries(targets)) {
          const build = services[name]!.build!;
          assert.equal(build.target, target, `${name} build target`);
          assert.ok(stages.has(target), `docker/Dockerfile has a stage named ${target}`);
          assert.equal(path.resolve(build.context, build.dockerfile), path.join(REPO, 'docker/Dockerfile'));
        }
        // --scale worker=N (and extractor=N) needs neither a fixed container name nor a published port.
        for (const name of ['extractor', 'worker']) {
          assert.equal(services[name]!.container_name, undefined);
          assert.equal(services[name]!.ports, undefined);
        }
        assert.ok(services.api!.ports?.length, 'the api publishes its port');
      });

      it('keeps Redis durable: AOF on a named volume, fsync always, no eviction', async () => {
        const { services, volumes } = models[profile];
        const redis = services.redis!;
        assert.ok(volumes && 'redis-data' in volumes && 'pg-data' in volumes && 'storage' in volumes);
        assert.equal(volumeOf(redis, '/data')?.source, 'redis-data');
        const confPath = redis.command?.[1];
        assert.ok(confPath, 'redis-server is started with a config file');
        const mount = volumeOf(redis, confPath);
        assert.ok(mount, `${confPath} is mounted into the redis container`);
        const directives = new Map(
          (await readFile(mount.source, 'utf8'))
            .split('\n')
            .map((line) => line.trim())
            .filter((line) => line && !line.startsWith('#'))
            .map((line) => [line.split(/\s+/)[0]!, line.split(/\s+/).slice(1).join(' ')] as const),
        );
        assert.equal(directives.get('appendonly'), 'yes');
        assert.equal(directives.get('appendfsync'), 'always');
        assert.equal(directives.get('maxmemory-policy'), 'noeviction');
        assert.equal(directives.get('dir'), '/data', 'the AOF is written to the volume');
        assert.equal(volumeOf(services.postgres!, '/var/lib/postgresql/data')?.source, 'pg-data');
        for (const name of ['api', 'extractor', 'worker']) assert.equal(volumeOf(services[name]!, '/data/storage')?.source, 'storage');
      });

      it('gives every service a health check, and starts the api and workers once Redis and PostgreSQL are healthy', () => {
        const { services } = models[profile];
        for (const [name, service] of Object.entries(services)) {
          assert.ok(service.healthcheck && !service.healthcheck.disable && (service.healthcheck.test?.length ?? 0) > 1, `${name} has a health check`);
        }
        for (const name of ['api', 'extractor', 'worker']) {
          assert.deepEqual(services[name]!.depends_on, { redis: { condition: 'service_healthy' }, postgres: { condition: 'service_healthy' } });
        }
      });

      it('sets only environment variables the service reads, with values it accepts, pointing at the compose services', () => {
        const { services } = models[profile];
        const postgresDb = services.postgres!.environment?.POSTGRES_DB;
        for (const name of ['api', 'extractor', 'worker']) {
          const environment = Object.fromEntries(Object.entries(services[name]!.environment ?? {}).map(([k, v]) => [k, v ?? '']));
          const read = variablesRead(environment);
          const unknown = Object.keys(environment).filter((key) => !read.has(key) && !LIBRARY_VARIABLES.has(key));
          assert.deepEqual(unknown, [], `${name}: variables nothing reads`);
          const config = loadConfig(environment); // throws a ConfigError naming any bad value
          assert.equal(new URL(config.redisUrl).hostname, 'redis');
          const database = new URL(config.databaseUrl);
          assert.equal(database.hostname, 'postgres');
          assert.equal(database.pathname, `/${postgresDb}`);
          assert.equal(environment.PGPASSWORD || decodeURIComponent(database.password), services.postgres!.environment?.POSTGRES_PASSWORD, `${name}: the database password`);
          assert.equal(config.requireDurableRedis, true);
        }
        // Only workers load the model: they mount it read-only; the API has neither the mount nor MODEL_PATH.
        const workerModel = loadConfig(Object.fromEntries(Object.entries(services.worker!.environment ?? {}).map(([k, v]) => [k, v ?? '']))).modelPath;
        assert.equal(volumeOf(services.worker!, path.posix.dirname(workerModel))?.read_only, true, 'worker: the models directory is mounted read-only');
        assert.equal(services.api!.environment?.MODEL_PATH, undefined);
        assert.equal(volumeOf(services.api!, '/models'), undefined, 'the api mounts no models directory');
        const worker = loadConfig(Object.fromEntries(Object.entries(services.worker!.environment ?? {}).map(([k, v]) => [k, v ?? ''])));
        assert.ok(worker.workerHealthPort, 'workers serve /readyz for their health check');
        // The extractor extracts and the workers detect; only the workers load the model.
        const extractor = loadConfig(Object.fromEntries(Object.entries(services.extractor!.environment ?? {}).map(([k, v]) => [k, v ?? ''])));
        assert.deepEqual([extractor.workerRoles, worker.workerRoles], [['extract'], ['detect']]);
        assert.ok(extractor.workerHealthPort, 'the extractor serves /readyz for its health check');
        assert.equal(volumeOf(services.extractor!, '/models'), undefined, 'the extractor mounts no models directory');
        if (profile === 'gpu') {
          assert.equal(worker.detectorEngine, 'auto');
          assert.equal(worker.tfjsBackend, 'node-gpu');
        } else {
          assert.equal(worker.detectorEngine, 'onnx');
        }
      });

      it(profile === 'gpu' ? 'reserves an NVIDIA GPU for the worker, and for nothing else' : 'reserves no GPU', () => {
        const { services } = models[profile];
        for (const [name, service] of Object.entries(services)) {
          const devices = service.deploy?.resources?.reservations?.devices ?? [];
          if (profile === 'gpu' && name === 'worker') {
            assert.equal(devices.length, 1);
            assert.equal(devices[0]!.driver, 'nvidia');
            assert.deepEqual(devices[0]!.capabilities, ['gpu']);
          } else {
            assert.deepEqual(devices, [], `${name} reserves no device`);
          }
        }
      });

      it('passes only build args that docker/Dockerfile declares', async () => {
        const { services } = models[profile];
        const dockerfile = await readFile(path.join(REPO, 'docker/Dockerfile'), 'utf8');
        const declared = new Set([...dockerfile.matchAll(/^ARG ([A-Z0-9_]+)/gm)].map((m) => m[1]));
        for (const [name, service] of Object.entries(services)) {
          for (const arg of Object.keys(service.build?.args ?? {})) assert.ok(declared.has(arg), `${name}: build arg ${arg} is not an ARG of docker/Dockerfile`);
        }
        if (profile === 'gpu') {
          // Empty by default: tfjs-node-gpu's own libtensorflow 2.9.1, for the default CUDA 11.2 image.
          assert.deepEqual(services.worker!.build!.args, { CUDA_IMAGE: 'nvidia/cuda:11.2.2-cudnn8-runtime-ubuntu20.04', TFJS_NODE_LIBTENSORFLOW: '' });
        }
      });

      it(
        profile === 'gpu'
          ? "keeps the worker's CUDA JIT cache on a named volume at the image's CUDA_CACHE_PATH, with CUDA_CACHE_MAXSIZE at 4 GiB"
          : 'mounts no CUDA cache',
        async () => {
          const { services, volumes } = models[profile];
          const dockerfile = await readFile(path.join(REPO, 'docker/Dockerfile'), 'utf8');
          if (profile === 'gpu') {
            const image = stageEnvironment(dockerfile, 'worker-gpu');
            assert.ok(image.CUDA_CACHE_PATH, 'worker-gpu sets CUDA_CACHE_PATH');
            assert.equal(image.CUDA_CACHE_MAXSIZE, String(4 * 1024 ** 3));
            const mount = volumeOf(services.worker!, image.CUDA_CACHE_PATH);
            assert.equal(mount?.source, 'cuda-cache', `a named volume at ${image.CUDA_CACHE_PATH}`);
            assert.notEqual(mount?.read_only, true);
            assert.ok(volumes && 'cuda-cache' in volumes);
            // The image creates the directory for the non-root user, so a new volume starts with that owner.
            assert.match(dockerfile, new RegExp(`mkdir -p [^\\n]*${image.CUDA_CACHE_PATH}`));
            for (const name of ['api', 'redis', 'postgres']) assert.equal(volumeOf(services[name]!, image.CUDA_CACHE_PATH), undefined, `${name} has no CUDA cache`);
          } else {
            assert.ok(!volumes || !('cuda-cache' in volumes));
            for (const [name, service] of Object.entries(services)) {
              assert.ok(!(service.volumes ?? []).some((v) => (typeof v === 'string' ? v : v.source).startsWith('cuda-cache')), `${name} mounts no CUDA cache`);
            }
          }
        },
      );

      it("passes the host's settings through: KEEP_SOURCE_VIDEO, PROBE_CONCURRENCY, upload limits, AWS credentials, session token, region and profile", async () => {
        const envFile = path.join(tmp, `settings-${profile}.env`);
        const settings = {
          STORAGE_DRIVER: 's3',
          S3_BUCKET: 'videos',
          KEEP_SOURCE_VIDEO: 'false',
          PROBE_CONCURRENCY: '7',
          MAX_FRAMES: '500',
          MIN_FREE_BYTES: '0',
          MAX_UPLOADS_PER_CLIENT: '2',
          IDLE_TIMEOUT_MS: '5000',
          AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE',
          AWS_SECRET_ACCESS_KEY: 'secret',
          AWS_SESSION_TOKEN: 'session-token',
          AWS_REGION: 'eu-central-1',
          AWS_PROFILE: 'ops',
        };
        await writeFile(envFile, requiredLines + Object.entries(settings).map(([k, v]) => `${k}=${v}`).join('\n') + '\n');
        const result = await render(`compose.${profile}.yml`, envFile);
        assert.equal(result.exitCode, 0, result.stderr);
        const { services } = parse(result.stdout) as RenderedModel;
        for (const name of ['api', 'extractor', 'worker']) {
          const environment = Object.fromEntries(Object.entries(services[name]!.environment ?? {}).map(([k, v]) => [k, v ?? '']));
          for (const key of ['KEEP_SOURCE_VIDEO', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_REGION', 'AWS_PROFILE'] as const) {
            assert.equal(environment[key], settings[key], `${name}: ${key}`);
          }
          const config = loadConfig(environment);
          assert.equal(config.s3?.region, 'eu-central-1', `${name}: S3 region from AWS_REGION when S3_REGION is empty`);
          assert.equal(config.keepSourceVideo, false);
          // Probing and extraction limits reach every process that may decode a video.
          assert.deepEqual([config.limits.maxFrames, config.limits.minFreeBytes], [500, 0], `${name}: media limits`);
        }
        const api = loadConfig(Object.fromEntries(Object.entries(services.api!.environment ?? {}).map(([k, v]) => [k, v ?? ''])));
        assert.equal(api.probeConcurrency, 7);
        assert.deepEqual([api.limits.maxUploadsPerClient, api.limits.idleTimeoutMs], [2, 5000], 'api: upload caps and deadlines');
      });
    });
  }

  it('docker/compose.env.example names exactly the variables the compose files substitute, each with its default', async () => {
    const composeFiles = ['compose.base.yml', 'compose.cpu.yml', 'compose.gpu.yml', 'compose.gpu-multi.yml', 'compose.shared-stores.yml'];
    const substituted = new Set<string>();
    for (const file of composeFiles) for (const match of (await readFile(path.join(REPO, file), 'utf8')).matchAll(/\$\{([A-Z0-9_]+)/g)) substituted.add(match[1]!);
    const example = await readFile(path.join(REPO, 'docker/compose.env.example'), 'utf8');
    const lines = example.split('\n').map((line) => /^#? ?([A-Z0-9_]+)=(.*)$/.exec(line)).filter((m) => m !== null);
    assert.deepEqual(lines.map((m) => m[1]).sort(), [...substituted].sort());
    // Every line uncommented, as a user would: the rendered stacks are the same as with only the required
    // settings, so each value shown is the default the files use. (STORES_BIND_IP, REDIS_PASSWORD and the
    // required API_KEY have none: left out, and API_KEY given as in every rendering.)
    const withoutDefault = ['STORES_BIND_IP', 'REDIS_PASSWORD', ...Object.keys(REQUIRED_SETTINGS)];
    const uncommented = path.join(tmp, 'compose-example.env');
    await writeFile(uncommented, requiredLines + lines.filter((m) => !withoutDefault.includes(m[1]!)).map((m) => `${m[1]}=${m[2]}`).join('\n') + '\n');
    for (const profile of ['cpu', 'gpu'] as const) {
      const result = await render(`compose.${profile}.yml`, uncommented);
      assert.equal(result.exitCode, 0, result.stderr);
      assert.deepEqual(parse(result.stdout), models[profile], `compose.${profile}.yml with every example value set`);
    }
  });

  it('compose.gpu-multi.yml adds a worker pinned to GPU 1, built and configured like the GPU worker, which keeps GPU 0', async () => {
    const result = await render(['compose.gpu.yml', 'compose.gpu-multi.yml']);
    assert.equal(result.exitCode, 0, result.stderr);
    const { services } = parse(result.stdout) as RenderedModel;
    assert.deepEqual(Object.keys(services).sort(), ['api', 'extractor', 'postgres', 'redis', 'worker', 'worker-gpu1']);
    assert.deepEqual(services.worker, models.gpu.services.worker, 'the first GPU worker is unchanged');
    const pinned = services['worker-gpu1']!;
    assert.deepEqual(pinned.deploy?.resources?.reservations?.devices, [{ driver: 'nvidia', device_ids: ['1'], capabilities: ['gpu'] }]);
    const { deploy: _pinnedDeploy, ...pinnedRest } = pinned;
    const { deploy: _workerDeploy, ...workerRest } = services.worker!;
    assert.deepEqual(pinnedRest, workerRest, 'everything but the GPU is the GPU worker');
  });

  it('compose.shared-stores.yml publishes Redis and PostgreSQL on the given address only, and puts Redis behind a password', async () => {
    const refused = await render(['compose.cpu.yml', 'compose.shared-stores.yml']);
    assert.notEqual(refused.exitCode, 0, 'refuses to run without an address and a password');
    assert.match(refused.stderr, /STORES_BIND_IP|REDIS_PASSWORD/);

    const envFile = path.join(tmp, 'stores.env');
    await writeFile(envFile, `${requiredLines}STORES_BIND_IP=10.1.2.3\nREDIS_PASSWORD=s3cretpw\n`);
    for (const profile of ['cpu', 'gpu'] as const) {
      const result = await render([`compose.${profile}.yml`, 'compose.shared-stores.yml'], envFile);
      assert.equal(result.exitCode, 0, result.stderr);
      const { services } = parse(result.stdout) as RenderedModel;
      const published = (service: RenderedService) =>
        (service.ports ?? []).map((port) => {
          if (typeof port === 'string') return port.replace(/\/tcp$/, '');
          const { host_ip: hostIp, published: hostPort, target } = port as { host_ip?: string; published?: string | number; target: number };
          return `${hostIp ?? ''}:${hostPort}:${target}`;
        });
      assert.deepEqual(published(services.redis!), ['10.1.2.3:6379:6379']);
      assert.deepEqual(published(services.postgres!), ['10.1.2.3:5432:5432']);
      const command = services.redis!.command!;
      assert.deepEqual(command.slice(0, 2), models[profile].services.redis!.command, 'still the durable redis.conf');
      assert.deepEqual(command.slice(2), ['--requirepass', 's3cretpw']);
      assert.equal(services.redis!.environment?.REDISCLI_AUTH, 's3cretpw', 'the health check authenticates');
      for (const name of ['api', 'extractor', 'worker']) {
        const config = loadConfig(Object.fromEntries(Object.entries(services[name]!.environment ?? {}).map(([k, v]) => [k, v ?? ''])));
        const url = new URL(config.redisUrl);
        assert.equal(url.password, 's3cretpw', `${name}: REDIS_URL carries the password`);
        assert.equal(url.hostname, 'redis');
      }
    }
  });
});

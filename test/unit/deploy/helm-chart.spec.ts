/**
 * deploy/helm/vidsense rendered as `helm template` would (test/helpers/helm-chart.ts, no helm binary here)
 * for several values combinations, every object validated against the Kubernetes and KEDA schemas from npm,
 * and what the chart promises checked on the rendered objects.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { loadConfig } from '../../../src/config.ts';
import { keySlot, queueKeys, queueLayout } from '../../../src/queue/keys.ts';
import { SHARD_TAGS_TEMPLATE, shardTagsTemplate } from '../../../scripts/queue-shard-tags.ts';
import type { GoValue } from '../../helpers/go-template.ts';
import { chartContext, mergeValues, parseYaml11, renderChart, renderTemplates, type RenderedChart } from '../../helpers/helm-chart.ts';
import { kindKey, kindOf, KINDS, typeCheckObjects } from '../../helpers/k8s-schemas.ts';

type Values = { [key: string]: GoValue };
type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- rendered YAML

const REPO = process.cwd();
const CHART = path.join(REPO, 'deploy/helm/vidsense');
// Read by libraries rather than by loadConfig: the AWS SDK's credential chain.
const LIBRARY_VARIABLES = new Set(['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN']);
const EXISTING_SECRET = 'vidsense-credentials';

/** The values a real install needs (values.yaml says which): external Redis, PostgreSQL and a bucket. */
const REQUIRED: Values = {
  redis: { host: 'redis.stores.svc', password: 'r3dis-pass@word' },
  postgres: { url: 'postgres://vidsense:pg-pass@postgres.stores.svc:5432/vidsense' },
  storage: { s3: { bucket: 'vidsense-videos' } },
};
const withRequired = (overrides: Values): Values => mergeValues(REQUIRED, overrides);

const COMBINATIONS: Record<string, Values> = {
  defaults: REQUIRED,
  'GPU workers on': withRequired({ workers: { gpu: { enabled: true } } }),
  'KEDA off': withRequired({ keda: { enabled: false } }),
  'ingress off': withRequired({ ingress: { enabled: false } }),
  'Redis Cluster': withRequired({
    redis: { host: null, username: 'vidsense', tls: true, cluster: { enabled: true, nodes: ['redis-0.redis:6379', 'redis-1.redis:6379', 'redis-2.redis:6379'], shards: 6, waitReplicas: 1 } },
    settings: { QUEUE_PREFIX: 'vs-c' },
  }),
  'existing secret': {
    redis: { host: 'redis.stores.svc' },
    secret: { existingSecret: EXISTING_SECRET, existingSecretHasRedisPassword: true },
    storage: { s3: { bucket: 'vidsense-videos' } },
  },
  'local storage on a ReadWriteMany claim, models on a claim': withRequired({
    storage: { driver: 'local' },
    model: { existingClaim: 'vidsense-models', file: 'yolov8s.onnx' },
    migrations: { enabled: false },
  }),
  'everything set': withRequired({
    fullnameOverride: 'vs',
    image: { registry: 'registry.example.com/vision/', tag: '1.2.3' },
    settings: { QUEUE_PREFIX: 'vs-prod', BATCH_SIZE: '8', MAX_FPS: '30' },
    redis: { username: 'vidsense', tls: true, port: 6380, database: 2 },
    apiKey: 'an-admin-api-key',
    storage: { s3: { endpoint: 'https://minio.stores.svc', forcePathStyle: true, prefix: 'prod', region: 'eu-west-1', accessKeyId: 'AKIA', secretAccessKey: 'secret' } },
    ingress: { className: 'nginx', host: 'vidsense.example.com', tls: [{ secretName: 'vidsense-tls', hosts: ['vidsense.example.com'] }] },
    api: { env: { PROBE_CONCURRENCY: '6', MAX_UPLOAD_BYTES: '4294967296' }, affinity: { podAntiAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 1, podAffinityTerm: { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: { 'app.kubernetes.io/component': 'api' } } } }] } } },
    serviceAccount: { annotations: { 'eks.amazonaws.com/role-arn': 'arn:aws:iam::123456789012:role/vidsense' } },
    imagePullSecrets: [{ name: 'registry' }],
    workers: {
      extract: { env: { EXTRACTION_CONCURRENCY: '4' } },
      gpu: { enabled: true, podAnnotations: { team: 'vision' }, affinity: { podAntiAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 1, podAffinityTerm: { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: { 'vidsense.io/worker-group': 'gpu' } } } }] } } },
      // A further group, as the lead would add one: values only.
      'cpu-large': {
        enabled: true,
        image: { repository: 'vidsense-worker-cpu' },
        roles: ['detect'],
        env: { DETECTOR_ENGINE: 'onnx', ORT_THREADS: '8' },
        resources: { requests: { cpu: '8', memory: '4Gi' }, limits: { memory: '8Gi' } },
        autoscaling: { enabled: true, minReplicas: 1, maxReplicas: 3, listLength: '8', activationListLength: '2', pollingInterval: 10, cooldownPeriod: 120 },
        nodeSelector: { 'node.kubernetes.io/instance-type': 'c7i.2xlarge' },
      },
    },
  }),
};

const rendered = new Map<string, RenderedChart>();
function render(name: string): RenderedChart {
  if (!rendered.has(name)) rendered.set(name, renderChart(CHART, COMBINATIONS[name]!));
  return rendered.get(name)!;
}
const objectsOf = (name: string): Obj[] => render(name).objects.map((o) => o.object);
const ofKind = (objects: Obj[], kind: string): Obj[] => objects.filter((o) => o.kind === kind);
const named = (objects: Obj[], kind: string, name: string): Obj => {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  assert.ok(found, `no ${kind} ${name}`);
  return found;
};
const hookOf = (object: Obj): string | undefined => object.metadata.annotations?.['helm.sh/hook'];

/** Pod templates: every Deployment's and the migration Job's. */
function podsOf(objects: Obj[]): Array<{ owner: Obj; spec: Obj }> {
  return objects.filter((o) => o.kind === 'Deployment' || o.kind === 'Job').map((owner) => ({ owner, spec: owner.spec.template.spec }));
}

/** A container's environment as the kubelet would build it, from the rendered ConfigMaps and Secrets. */
function resolveEnv(objects: Obj[], container: Obj, existingSecret: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  const secretData = (name: string): Record<string, string> => {
    if (name === EXISTING_SECRET) return existingSecret;
    const secret = objects.find((o) => o.kind === 'Secret' && o.metadata.name === name);
    assert.ok(secret, `container ${container.name} reads Secret ${name}, which the chart does not render`);
    return secret.stringData;
  };
  for (const source of container.envFrom ?? []) {
    assert.ok(source.configMapRef && !source.secretRef, 'envFrom only for the settings ConfigMap: a Secret would hand the processes keys only KEDA needs');
    Object.assign(env, named(objects, 'ConfigMap', source.configMapRef.name).data);
  }
  for (const entry of container.env ?? []) {
    if ('value' in entry) env[entry.name] = entry.value;
    else {
      const ref = entry.valueFrom.secretKeyRef;
      const value = secretData(ref.name)[ref.key];
      if (value === undefined) assert.ok(ref.optional, `${container.name}: ${entry.name} from ${ref.name}/${ref.key}, which does not exist, is not optional`);
      else env[entry.name] = value;
    }
  }
  return env;
}

/** The variables loadConfig reads given this environment (and its S3 variant). */
function variablesRead(environment: Record<string, string>): Set<string> {
  const read = new Set<string>();
  for (const variant of [environment, { ...environment, STORAGE_DRIVER: 's3', S3_BUCKET: 'bucket' }]) {
    loadConfig(new Proxy(variant, { get: (target, name) => (typeof name === 'string' && read.add(name), Reflect.get(target, name)) }));
  }
  return read;
}

function matches(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([key, value]) => labels[key] === value);
}

describe('Helm chart deploy/helm/vidsense: rendered, validated against the Kubernetes and KEDA schemas, and checked', function () {
  // One TypeScript compiler run over every rendered object takes a few seconds.
  this.timeout(60_000);

  describe('every object of every values combination is a known kind and valid', () => {
    for (const name of Object.keys(COMBINATIONS)) {
      it(`${name}: renders, and each object passes its kind's schema`, () => {
        const objects = objectsOf(name);
        assert.ok(objects.length > 0);
        const failures: string[] = [];
        for (const object of objects) {
          try {
            kindOf(object).validate(object);
          } catch (error) {
            failures.push(`${kindKey(object)} ${object.metadata?.name}: ${(error as Error).message}`);
          }
        }
        assert.deepEqual(failures, []);
        const ids = objects.map((o) => `${o.kind}/${o.metadata.name}`);
        assert.equal(new Set(ids).size, ids.length, `duplicate objects: ${ids.join(', ')}`);
      });
    }

    it('no object of any combination has a field its kind does not define (TypeScript interfaces of the same models)', () => {
      const all = Object.keys(COMBINATIONS).flatMap((name) => objectsOf(name).map((object) => ({ label: `${name}: ${object.kind} ${object.metadata.name}`, object })));
      assert.deepEqual(typeCheckObjects(all), []);
    });

    it('the checks are real: a misspelt field, a wrong type and an unknown kind are refused', () => {
      const deployment = structuredClone(named(objectsOf('defaults'), 'Deployment', 'vidsense-api'));
      const container = deployment.spec.template.spec.containers[0];
      container.livenessprobe = container.livenessProbe;
      const diagnostics = typeCheckObjects([{ label: 'misspelt', object: deployment }]);
      assert.equal(diagnostics.length, 1);
      assert.match(diagnostics[0]!, /^misspelt: .*'"livenessprobe"' does not exist in type 'IContainer'/);
      const scaled = structuredClone(ofKind(objectsOf('defaults'), 'ScaledObject')[0]!);
      scaled.spec.triggers[0].metadata.listLength = 4;
      assert.throws(() => kindOf(scaled).validate(scaled), /listLength must be string/);
      const pdb = structuredClone(ofKind(objectsOf('defaults'), 'PodDisruptionBudget')[0]!);
      pdb.spec.maxUnavailable = { one: 1 };
      assert.throws(() => kindOf(pdb).validate(pdb), /maxUnavailable/);
      assert.throws(() => kindOf({ apiVersion: 'autoscaling/v2', kind: 'HorizontalPodAutoscaler' }), /no schema for autoscaling\/v2\/HorizontalPodAutoscaler/);
    });

    it('renders the kinds expected, and only those', () => {
      const kinds = (name: string) => [...new Set(objectsOf(name).map(kindKey))].sort();
      assert.deepEqual(kinds('defaults'), Object.keys(KINDS).filter((k) => k !== 'v1/PersistentVolumeClaim').sort());
      assert.ok(kinds('local storage on a ReadWriteMany claim, models on a claim').includes('v1/PersistentVolumeClaim'));
    });
  });

  describe('settings', () => {
    it('every variable a container gets is one the service reads, and together they load as a valid config', () => {
      const existing = { REDIS_URL: 'redis://:pw@redis.stores.svc:6379/0', DATABASE_URL: 'postgres://u:p@pg:5432/vidsense', REDIS_PASSWORD: 'pw' };
      for (const name of Object.keys(COMBINATIONS)) {
        const objects = objectsOf(name);
        for (const { owner, spec } of podsOf(objects)) {
          for (const container of spec.containers) {
            const env = resolveEnv(objects, container, existing);
            const read = variablesRead(env);
            const unread = Object.keys(env).filter((variable) => !read.has(variable) && !LIBRARY_VARIABLES.has(variable));
            assert.deepEqual(unread, [], `${name}: ${owner.metadata.name} gets variables nothing reads`);
            assert.doesNotThrow(() => loadConfig(env), `${name}: ${owner.metadata.name}`);
          }
        }
      }
    });

    it('the chart builds REDIS_URL from redis.* (password URL-encoded) and keeps credentials in the Secret', () => {
      const objects = objectsOf('everything set');
      const secret = named(objects, 'Secret', 'vs');
      assert.equal(secret.stringData.REDIS_URL, 'rediss://vidsense:r3dis-pass%40word@redis.stores.svc:6380/2');
      assert.equal(new URL(secret.stringData.REDIS_URL).password, 'r3dis-pass%40word');
      assert.equal(decodeURIComponent(new URL(secret.stringData.REDIS_URL).password), 'r3dis-pass@word');
      assert.deepEqual(Object.keys(secret.stringData).sort(), ['API_KEY', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'DATABASE_URL', 'REDIS_PASSWORD', 'REDIS_URL', 'REDIS_USERNAME']);
      const settings = named(objects, 'ConfigMap', 'vs-settings').data;
      for (const secretValue of Object.values(secret.stringData) as string[]) assert.ok(!Object.values(settings).includes(secretValue), 'a secret value in the ConfigMap');
      const api = named(objects, 'Deployment', 'vs-api').spec.template.spec.containers[0];
      const config = loadConfig(resolveEnv(objects, api, {}));
      assert.deepEqual([config.storageDriver, config.s3?.bucket, config.s3?.endpoint, config.s3?.forcePathStyle, config.s3?.prefix, config.s3?.region], ['s3', 'vidsense-videos', 'https://minio.stores.svc', true, 'prod', 'eu-west-1']);
      assert.deepEqual([config.queuePrefix, config.batchSize, config.maxFps, config.probeConcurrency, config.maxUploadBytes, config.shutdownTimeoutMs, config.apiKey], ['vs-prod', 8, 30, 6, 4294967296, 30000, 'an-admin-api-key']);
      const extractor = named(objects, 'Deployment', 'vs-worker-extract').spec.template.spec.containers[0];
      assert.deepEqual([loadConfig(resolveEnv(objects, extractor, {})).extractionConcurrency, loadConfig(resolveEnv(objects, extractor, {})).workerRoles], [4, ['extract']]);
    });

    it('refuses settings the chart owns, and values it cannot render', () => {
      const refuse = (overrides: Values, message: RegExp) => assert.throws(() => renderChart(CHART, withRequired(overrides)), message);
      refuse({ settings: { REDIS_URL: 'redis://elsewhere:6379' } }, /settings\.REDIS_URL is set by the chart/);
      refuse({ api: { env: { PORT: '8080' } } }, /api\.env\.PORT is set by the chart/);
      refuse({ workers: { cpu: { env: { WORKER_HEALTH_PORT: '9000' } } } }, /workers\.cpu\.env\.WORKER_HEALTH_PORT is set by the chart/);
      refuse({ storage: { driver: 'nfs' } }, /storage\.driver must be s3 or local, got "nfs"/);
      refuse({ workers: { cpu: { autoscaling: { minReplicas: 0 } } } }, /workers\.cpu\.autoscaling\.minReplicas must be at least 1/);
      refuse({ workers: { cpu: { roles: ['detect', 'transcode'] } } }, /workers\.cpu\.roles: transcode is not a role; the roles are extract and detect/);
      refuse({ workers: { cpu: { roles: [] } } }, /workers\.cpu\.roles must name at least one of extract, detect/);
      refuse({ workers: { cpu: { roles: 'detect' } } }, /workers\.cpu\.roles must be a list of extract and\/or detect/);
      refuse({ workers: { cpu: { env: { WORKER_ROLES: 'extract' } } } }, /workers\.cpu\.env\.WORKER_ROLES is set by the chart/);
      refuse({ workers: { gpu: { enabled: true, resources: { limits: { 'nvidia.com/gpu': 2 } } } } }, /workers\.gpu: set the GPU count in gpu\.count/);
      refuse({ workers: { gpu: { enabled: true, affinity: { nodeAffinity: {} } } } }, /workers\.gpu: gpu\.computeMajors sets the node affinity/);
      refuse({ storage: { s3: { forcePathStyle: 'false' } } }, /ternary: wrong type for value; expected bool; got string/);
    });

    it('without the required values the render stops, naming each one', () => {
      assert.throws(() => renderChart(CHART), /storage\.s3\.bucket is required/);
      assert.throws(() => renderChart(CHART, { storage: { s3: { bucket: 'b' } } }), /(redis\.host|postgres\.url) is required/);
      assert.throws(() => renderChart(CHART, { storage: { s3: { bucket: 'b' } }, redis: { host: 'r' } }), /postgres\.url is required \(or secret\.existingSecret\)/);
      assert.throws(() => renderChart(CHART, { storage: { s3: { bucket: 'b' } }, secret: { existingSecret: 's' } }), /redis\.host is required for KEDA's trigger/);
      assert.doesNotThrow(() => renderChart(CHART, { storage: { s3: { bucket: 'b' } }, secret: { existingSecret: 's' }, keda: { enabled: false } }));
    });

    it('a change of settings or credentials changes the pods (checksum annotations)', () => {
      const checksums = (values: Values) =>
        ofKind(renderChart(CHART, values).objects.map((o) => o.object), 'Deployment').map((d) => [d.spec.template.metadata.annotations['checksum/settings'], d.spec.template.metadata.annotations['checksum/secret']]);
      const base = checksums(REQUIRED);
      const settingsChanged = checksums(withRequired({ settings: { BATCH_SIZE: '8' } }));
      const secretChanged = checksums(withRequired({ redis: { password: 'another' } }));
      base.forEach(([settings, secret], i) => {
        assert.notEqual(settingsChanged[i]![0], settings);
        assert.equal(settingsChanged[i]![1], secret);
        assert.equal(secretChanged[i]![0], settings);
        assert.notEqual(secretChanged[i]![1], secret);
      });
    });
  });

  describe('workloads', () => {
    it('runs the images docker/Dockerfile builds, under the names the compose files give them', () => {
      const compose = parseYaml11(fs.readFileSync(path.join(REPO, 'compose.base.yml'), 'utf8')) as Obj;
      const dockerfile = fs.readFileSync(path.join(REPO, 'docker/Dockerfile'), 'utf8');
      const repositoryOf = (service: string) => {
        assert.match(dockerfile, new RegExp(`^FROM \\S+ AS ${compose.services[service].build.target}$`, 'm'));
        return String(compose.services[service].image).replace(/:.*$/, '');
      };
      const objects = objectsOf('GPU workers on');
      const image = (kind: string, name: string) => named(objects, kind, name).spec.template.spec.containers[0].image;
      assert.equal(image('Deployment', 'vidsense-api'), `${repositoryOf('api')}:0.1.0`);
      assert.equal(image('Job', 'vidsense-migrate'), `${repositoryOf('api')}:0.1.0`);
      assert.equal(image('Deployment', 'vidsense-worker-cpu'), `${repositoryOf('worker')}:0.1.0`);
      assert.equal(image('Deployment', 'vidsense-worker-gpu'), `${repositoryOf('gpu-worker')}:0.1.0`);
      const custom = objectsOf('everything set');
      assert.equal(named(custom, 'Deployment', 'vs-api').spec.template.spec.containers[0].image, 'registry.example.com/vision/vidsense-api:1.2.3');
      const chart = parseYaml11(fs.readFileSync(path.join(CHART, 'Chart.yaml'), 'utf8')) as Obj;
      const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string };
      assert.equal(chart.appVersion, pkg.version, 'the default image tag is the package version');
    });

    it('probes /healthz (startup, liveness) and /readyz (readiness) on the port each process serves them on', () => {
      for (const name of Object.keys(COMBINATIONS)) {
        const objects = objectsOf(name);
        for (const deployment of ofKind(objects, 'Deployment')) {
          const container = deployment.spec.template.spec.containers[0];
          const env = resolveEnv(objects, container, { REDIS_URL: 'redis://r:6379', DATABASE_URL: 'postgres://p/d' });
          const config = loadConfig(env);
          const port = container.ports.find((p: Obj) => p.name === (container.name === 'api' ? 'http' : 'health')).containerPort;
          assert.equal(port, container.name === 'api' ? config.port : config.workerHealthPort, `${name}: ${deployment.metadata.name} serves health on the probed port`);
          for (const [probe, pathName] of [['startupProbe', '/healthz'], ['livenessProbe', '/healthz'], ['readinessProbe', '/readyz']] as const) {
            assert.equal(container[probe].httpGet.path, pathName, `${deployment.metadata.name} ${probe}`);
            assert.ok([port, container.name === 'api' ? 'http' : 'health'].includes(container[probe].httpGet.port));
          }
          assert.ok(container.resources.requests.cpu && container.resources.requests.memory && container.resources.limits.memory, `${deployment.metadata.name} has resources`);
          // The grace period covers SHUTDOWN_TIMEOUT_MS (and the api's preStop pause).
          assert.ok(deployment.spec.template.spec.terminationGracePeriodSeconds * 1000 >= config.shutdownTimeoutMs + 10_000);
        }
      }
    });

    it('every selector picks exactly its own pods: Deployments, PodDisruptionBudgets and the api Service', () => {
      const objects = objectsOf('everything set');
      const deployments = ofKind(objects, 'Deployment');
      const podLabels = deployments.map((d) => d.spec.template.metadata.labels as Record<string, string>);
      for (const deployment of deployments) {
        assert.ok(matches(deployment.spec.selector.matchLabels, deployment.spec.template.metadata.labels), `${deployment.metadata.name} selects its template`);
        assert.equal(podLabels.filter((labels) => matches(deployment.spec.selector.matchLabels, labels)).length, 1, `${deployment.metadata.name} selects only its own pods`);
      }
      const pdbs = ofKind(objects, 'PodDisruptionBudget');
      assert.equal(pdbs.length, deployments.length);
      for (const pdb of pdbs) {
        const selected = deployments.filter((d) => matches(pdb.spec.selector.matchLabels, d.spec.template.metadata.labels));
        assert.deepEqual(selected.map((d) => d.metadata.name), [pdb.metadata.name]);
        assert.equal(pdb.spec.maxUnavailable, 1, 'one pod at a time may be evicted, so a drain never blocks');
      }
      const service = named(objects, 'Service', 'vs-api');
      assert.deepEqual(deployments.filter((d) => matches(service.spec.selector, d.spec.template.metadata.labels)).map((d) => d.metadata.name), ['vs-api']);
      assert.equal(service.spec.ports[0].targetPort, 'http');
    });

    it('GPU workers ask for nvidia.com/gpu, tolerate the GPU taint and go to nodes by compute capability; CPU workers do none of it', () => {
      const objects = objectsOf('GPU workers on');
      const gpu = named(objects, 'Deployment', 'vidsense-worker-gpu').spec.template.spec;
      assert.equal(gpu.containers[0].resources.limits['nvidia.com/gpu'], 1);
      assert.deepEqual(gpu.tolerations, [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }]);
      assert.deepEqual(gpu.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms, [
        { matchExpressions: [{ key: 'nvidia.com/gpu.compute.major', operator: 'In', values: ['7', '8'] }] },
      ]);
      const env = Object.fromEntries(gpu.containers[0].env.filter((e: Obj) => 'value' in e).map((e: Obj) => [e.name, e.value]));
      assert.equal(env.DETECTOR_ENGINE, 'tfjs', 'a GPU worker that sees no GPU fails rather than running on the CPU');
      assert.equal(env.TFJS_BACKEND, 'node-gpu');
      assert.equal(named(objects, 'Deployment', 'vidsense-worker-gpu').spec.strategy.rollingUpdate.maxSurge, 0);
      const cpu = named(objects, 'Deployment', 'vidsense-worker-cpu').spec.template.spec;
      assert.equal(cpu.containers[0].resources.limits['nvidia.com/gpu'], undefined);
      assert.equal(cpu.tolerations, undefined);
      assert.equal(cpu.affinity, undefined);
      assert.ok(!objectsOf('defaults').some((o) => o.metadata.name === 'vidsense-worker-gpu'), 'GPU workers are off by default');
      // The user's own affinity terms are kept beside the GPU node affinity.
      const both = named(objectsOf('everything set'), 'Deployment', 'vs-worker-gpu').spec.template.spec.affinity;
      assert.ok(both.nodeAffinity && both.podAntiAffinity);
    });

    it('pods run as the images\' non-root user with a read-only root, writing only to their own volumes', () => {
      for (const { owner, spec } of podsOf(objectsOf('local storage on a ReadWriteMany claim, models on a claim').concat(objectsOf('defaults')))) {
        assert.equal(spec.securityContext.runAsUser, 1000, owner.metadata.name);
        assert.equal(spec.securityContext.runAsNonRoot, true);
        assert.equal(spec.automountServiceAccountToken, false);
        for (const container of spec.containers) {
          assert.equal(container.securityContext.readOnlyRootFilesystem, true);
          assert.equal(container.securityContext.allowPrivilegeEscalation, false);
        }
      }
      const objects = objectsOf('local storage on a ReadWriteMany claim, models on a claim');
      const claim = named(objects, 'PersistentVolumeClaim', 'vidsense-storage');
      assert.deepEqual(claim.spec.accessModes, ['ReadWriteMany']);
      assert.equal(claim.metadata.annotations['helm.sh/resource-policy'], 'keep');
      for (const deployment of ofKind(objects, 'Deployment')) {
        const { containers, volumes } = deployment.spec.template.spec;
        const env = resolveEnv(objects, containers[0], {});
        assert.equal(env.STORAGE_DRIVER, 'local');
        const mount = containers[0].volumeMounts.find((m: Obj) => m.mountPath === env.STORAGE_DIR);
        assert.ok(mount, `${deployment.metadata.name} mounts STORAGE_DIR`);
        assert.equal(volumes.find((v: Obj) => v.name === mount.name).persistentVolumeClaim.claimName, 'vidsense-storage');
        if (containers[0].name === 'worker') {
          assert.equal(env.MODEL_PATH, '/models/yolov8s.onnx');
          assert.ok(containers[0].volumeMounts.some((m: Obj) => m.mountPath === '/models' && m.readOnly));
          assert.equal(env.TFJS_MODEL_DIR, '/home/node/tfjs-model/yolov8s_web_model');
          assert.ok(containers[0].volumeMounts.some((m: Obj) => m.mountPath === '/home/node/tfjs-model'), 'the converted graph model has a writable place');
        }
      }
    });
  });

  describe('KEDA', () => {
    it('scales each worker group on the pending list of each job kind it takes (WORKER_ROLES), named as src/queue/keys.ts names it', () => {
      for (const [name, prefix] of [['defaults', 'vidsense'], ['everything set', 'vs-prod']] as const) {
        const objects = objectsOf(name);
        const scaled = ofKind(objects, 'ScaledObject');
        const workers = ofKind(objects, 'Deployment').filter((d) => d.spec.template.spec.containers[0].name === 'worker');
        assert.deepEqual(scaled.map((s) => s.spec.scaleTargetRef.name).sort(), workers.map((w) => w.metadata.name).sort());
        for (const object of scaled) {
          const worker = workers.find((w) => w.metadata.name === object.spec.scaleTargetRef.name)!;
          const roles = loadConfig(resolveEnv(objects, worker.spec.template.spec.containers[0], { REDIS_URL: 'redis://r:6379', DATABASE_URL: 'postgres://p/db' })).workerRoles;
          assert.deepEqual(object.spec.triggers.map((trigger: Obj) => trigger.metadata.listName), roles.map((role) => queueKeys(prefix).pending[role]), object.metadata.name);
          for (const trigger of object.spec.triggers) {
            assert.equal(trigger.type, 'redis');
            assert.ok(Number(trigger.metadata.listLength) > 0 && Number(trigger.metadata.activationListLength) >= 0);
          }
          assert.ok(object.spec.minReplicaCount >= 1);
        }
        for (const worker of workers) assert.equal(worker.spec.replicas, undefined, `${worker.metadata.name}: KEDA owns its replica count`);
      }
      const trigger = ofKind(objectsOf('everything set'), 'ScaledObject').find((s) => s.metadata.name === 'vs-worker-cpu-large')!.spec.triggers[0];
      assert.deepEqual(trigger.metadata, { address: 'redis.stores.svc:6380', listName: 'vs-prod:queue:pending:detect', listLength: '8', activationListLength: '2', databaseIndex: '2', enableTLS: 'true' });
      // By default one group extracts and one detects; the api takes no jobs.
      const defaults = objectsOf('defaults');
      const rolesOf = (deployment: string) => resolveEnv(defaults, named(defaults, 'Deployment', deployment).spec.template.spec.containers[0], {}).WORKER_ROLES;
      assert.deepEqual([rolesOf('vidsense-worker-extract'), rolesOf('vidsense-worker-cpu'), rolesOf('vidsense-api')], ['extract', 'detect', undefined]);
    });

    it('on a Redis Cluster: one redis-cluster trigger per queue shard, on the pending lists src/queue/keys.ts names', () => {
      const objects = objectsOf('Redis Cluster');
      const layout = queueLayout('vs-c', { shards: 6, cluster: true });
      const auth = ofKind(objects, 'TriggerAuthentication')[0]!;
      for (const scaled of ofKind(objects, 'ScaledObject')) {
        // One trigger per job kind the group takes (its WORKER_ROLES) and shard.
        const worker = named(objects, 'Deployment', scaled.spec.scaleTargetRef.name);
        const roles = resolveEnv(objects, worker.spec.template.spec.containers[0], {}).WORKER_ROLES!.split(',') as Array<'extract' | 'detect'>;
        assert.deepEqual(
          scaled.spec.triggers.map((t: Obj) => t.metadata.listName),
          roles.flatMap((role) => layout.shards.map((keys) => keys.pending[role])),
        );
        for (const trigger of scaled.spec.triggers) {
          assert.equal(trigger.type, 'redis-cluster');
          assert.equal(trigger.metadata.addresses, 'redis-0.redis:6379,redis-1.redis:6379,redis-2.redis:6379');
          assert.equal(trigger.metadata.enableTLS, 'true');
          assert.equal(trigger.authenticationRef.name, auth.metadata.name);
        }
      }
      // Six shards, six different slots: the tags the chart carries are the service's.
      assert.equal(new Set(layout.shards.map((keys) => keySlot(keys.pending.detect))).size, 6);
    });

    it('on a Redis Cluster: every pod gets the redis+cluster:// URL, QUEUE_SHARDS and QUEUE_WAIT_REPLICAS, which loadConfig reads as a cluster', () => {
      const objects = objectsOf('Redis Cluster');
      // Every pod that talks to Redis (the migration Job only gets DATABASE_URL).
      const pods = podsOf(objects).filter(({ spec }) => 'REDIS_URL' in resolveEnv(objects, spec.containers[0], {}));
      assert.deepEqual(pods.map(({ owner }) => owner.metadata.name).sort(), ofKind(objects, 'Deployment').map((d) => d.metadata.name).sort());
      for (const { spec } of pods) {
        const env = resolveEnv(objects, spec.containers[0], {});
        const config = loadConfig(env);
        assert.deepEqual(config.redisCluster?.nodes.map((n) => `${n.host}:${n.port}`), ['redis-0.redis:6379', 'redis-1.redis:6379', 'redis-2.redis:6379']);
        assert.deepEqual([config.redisCluster?.tls, config.redisCluster?.username, config.redisCluster?.password], [true, 'vidsense', 'r3dis-pass@word']);
        assert.deepEqual([config.queueShards, config.queueWaitReplicas], [6, 1]);
      }
      assert.throws(() => renderChart(CHART, withRequired({ redis: { cluster: { enabled: true, nodes: ['a:1'], shards: 33 } } })), /redis.cluster.shards must be 1 to 32/);
      assert.throws(() => renderChart(CHART, withRequired({ redis: { cluster: { enabled: true } } })), /redis.cluster.nodes is required/);
      assert.throws(() => renderChart(CHART, withRequired({ settings: { QUEUE_SHARDS: '2' } })), /settings.QUEUE_SHARDS is set by the chart/);
    });

    it('carries the shard tags scripts/queue-shard-tags.ts generates from src/queue/keys.ts (regenerate after changing them)', () => {
      assert.equal(fs.readFileSync(SHARD_TAGS_TEMPLATE, 'utf8'), shardTagsTemplate());
    });

    it('authenticates to Redis with the Secret\'s REDIS_PASSWORD (and username), which the processes never get', () => {
      for (const name of ['defaults', 'everything set']) {
        const objects = objectsOf(name);
        const auth = ofKind(objects, 'TriggerAuthentication')[0]!;
        const secret = ofKind(objects, 'Secret').find((s) => !hookOf(s))!;
        for (const ref of auth.spec.secretTargetRef) {
          assert.equal(ref.name, secret.metadata.name);
          assert.ok(ref.key in secret.stringData, `${ref.key} is in the Secret`);
        }
        assert.deepEqual(auth.spec.secretTargetRef.map((r: Obj) => r.parameter), name === 'defaults' ? ['password'] : ['password', 'username']);
        for (const scaled of ofKind(objects, 'ScaledObject')) assert.equal(scaled.spec.triggers[0].authenticationRef.name, auth.metadata.name);
        for (const { spec } of podsOf(objects)) {
          const names = spec.containers.flatMap((c: Obj) => (c.env ?? []).map((e: Obj) => e.name));
          assert.ok(!names.includes('REDIS_PASSWORD') && !names.includes('REDIS_USERNAME'));
        }
      }
      const noPassword = renderChart(CHART, withRequired({ redis: { password: '' } })).objects.map((o) => o.object);
      assert.deepEqual(ofKind(noPassword, 'TriggerAuthentication'), []);
      assert.equal(ofKind(noPassword, 'ScaledObject')[0]!.spec.triggers[0].authenticationRef, undefined);
    });

    it('KEDA off: no ScaledObject or TriggerAuthentication, and the Deployments have their replica counts', () => {
      const objects = objectsOf('KEDA off');
      assert.deepEqual([...ofKind(objects, 'ScaledObject'), ...ofKind(objects, 'TriggerAuthentication')], []);
      assert.equal(named(objects, 'Deployment', 'vidsense-worker-cpu').spec.replicas, 2);
    });
  });

  describe('ingress, secrets and migrations', () => {
    it('the Ingress routes to the api Service without a body-size limit; ingress off leaves the Service', () => {
      const objects = objectsOf('everything set');
      const ingress = ofKind(objects, 'Ingress')[0]!;
      const rule = ingress.spec.rules[0];
      assert.equal(rule.host, 'vidsense.example.com');
      assert.deepEqual(rule.http.paths[0].backend.service, { name: 'vs-api', port: { name: 'http' } });
      assert.equal(ingress.spec.ingressClassName, 'nginx');
      assert.equal(ingress.metadata.annotations['nginx.ingress.kubernetes.io/proxy-body-size'], '0');
      assert.equal(ingress.metadata.annotations['nginx.ingress.kubernetes.io/proxy-request-buffering'], 'off');
      const off = objectsOf('ingress off');
      assert.deepEqual(ofKind(off, 'Ingress'), []);
      assert.ok(named(off, 'Service', 'vidsense-api'));
    });

    it('with an existing Secret the chart renders none and every reference names it', () => {
      const objects = objectsOf('existing secret');
      assert.deepEqual(ofKind(objects, 'Secret'), []);
      const refs = podsOf(objects).flatMap(({ spec }) => spec.containers.flatMap((c: Obj) => (c.env ?? []).filter((e: Obj) => e.valueFrom).map((e: Obj) => e.valueFrom.secretKeyRef)));
      assert.ok(refs.length > 0);
      for (const ref of refs) assert.equal(ref.name, EXISTING_SECRET);
      // The api, the extract and cpu worker groups, and the migration Job (which needs no Redis).
      assert.deepEqual(refs.filter((r: Obj) => !r.optional).map((r: Obj) => r.key).sort(), ['DATABASE_URL', 'DATABASE_URL', 'DATABASE_URL', 'DATABASE_URL', 'REDIS_URL', 'REDIS_URL', 'REDIS_URL']);
      assert.equal(ofKind(objects, 'TriggerAuthentication')[0]!.spec.secretTargetRef[0].name, EXISTING_SECRET);
    });

    it('migrations run once per install or upgrade, in a hook Job of the api image that needs nothing the release creates', () => {
      const objects = objectsOf('defaults');
      const job = named(objects, 'Job', 'vidsense-migrate');
      assert.equal(hookOf(job), 'pre-install,pre-upgrade');
      const pod = job.spec.template.spec;
      assert.deepEqual(pod.containers[0].command, ['node', 'dist/main/migrate.js']);
      assert.ok(fs.existsSync(path.join(REPO, 'src/main/migrate.ts')), 'dist/main/migrate.js is compiled from src/main/migrate.ts');
      assert.equal(pod.restartPolicy, 'Never');
      // Hooks run before the release's objects exist: no chart ServiceAccount, no chart Secret or ConfigMap.
      assert.equal(pod.serviceAccountName, undefined);
      assert.equal(pod.containers[0].envFrom, undefined);
      const hookSecret = named(objects, 'Secret', pod.containers[0].env.find((e: Obj) => e.name === 'DATABASE_URL').valueFrom.secretKeyRef.name);
      assert.equal(hookOf(hookSecret), 'pre-install,pre-upgrade');
      assert.ok(Number(hookSecret.metadata.annotations['helm.sh/hook-weight']) < Number(job.metadata.annotations['helm.sh/hook-weight']), 'the Secret exists before the Job');
      assert.equal(hookSecret.stringData.DATABASE_URL, REQUIRED.postgres && (REQUIRED.postgres as Values).url);
      // Only hook objects are hooks.
      assert.deepEqual(objects.filter(hookOf).map((o) => `${o.kind}/${o.metadata.name}`).sort(), ['Job/vidsense-migrate', 'Secret/vidsense-migrate']);
      const existing = named(objectsOf('existing secret'), 'Job', 'vidsense-migrate');
      assert.equal(existing.spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef.name, EXISTING_SECRET);
      assert.deepEqual(ofKind(objectsOf('local storage on a ReadWriteMany claim, models on a claim'), 'Job'), []);
    });
  });

  describe('the renderer against Go: text/template with Sprig and Helm\'s functions (test/helpers/helm-go/main.go)', function () {
    // Debian's Go and Sprig (scripts/test installs them; skipped, saying why, where they are missing).
    const GOPATH = '/usr/share/gocode';
    let binary: string;
    let tmp: string;

    before(async function () {
      this.timeout(300_000);
      const missing = ['github.com/Masterminds/sprig', 'github.com/ghodss/yaml'].filter((pkg) => !fs.existsSync(path.join(GOPATH, 'src', pkg)));
      const go = await execa('go', ['version'], { reject: false });
      if (go.exitCode !== 0 || missing.length > 0) {
        console.log(`      Go cross-check skipped: needs Debian's golang-go, golang-github-masterminds-sprig-dev and golang-github-ghodss-yaml-dev (${go.exitCode !== 0 ? 'no go' : `missing ${missing.join(', ')}`})`);
        this.skip();
      }
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vidsense-helm-go-'));
      binary = path.join(tmp, 'helm-go');
      await execa('go', ['build', '-o', binary, path.join(REPO, 'test/helpers/helm-go/main.go')], { env: { GO111MODULE: 'off', GOPATH, GOCACHE: path.join(tmp, 'cache') } });
    });
    after(() => tmp && fs.rmSync(tmp, { recursive: true, force: true }));

    async function renderWithGo(values: Values): Promise<Record<string, string>> {
      const context = chartContext(CHART, values);
      const { stdout } = await execa(binary, [], { input: JSON.stringify({ chartDir: CHART, values: context.Values, release: context.Release, chart: context.Chart }) });
      const output = JSON.parse(stdout) as Record<string, string>;
      if (typeof output.error === 'string') throw new Error(output.error);
      return output;
    }

    for (const name of Object.keys(COMBINATIONS)) {
      it(`${name}: every template renders to the same bytes`, async () => {
        assert.deepEqual(renderTemplates(CHART, COMBINATIONS[name]!), await renderWithGo(COMBINATIONS[name]!));
      });
    }

    it('what the renderer refuses, Go refuses too', async () => {
      for (const overrides of [{ storage: { s3: { forcePathStyle: 'false' } } }, { workers: { cpu: { autoscaling: { minReplicas: 0 } } } }, { settings: { PORT: '1' } }, { storage: { s3: { bucket: '' } } }, { workers: { cpu: { roles: ['transcode'] } } }, { workers: { cpu: { roles: [] } } }, { workers: { cpu: { roles: 'detect' } } }] as Values[]) {
        const values = withRequired(overrides);
        assert.throws(() => renderTemplates(CHART, values));
        await assert.rejects(renderWithGo(values), Error, JSON.stringify(overrides));
      }
    });
  });
});

import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type { Express } from 'express';
import { createApp } from '../../../src/api/app.ts';
import { isPublicRequest } from '../../../src/api/auth.ts';
import { openApiDocument } from '../../../src/api/openapi.ts';
import type { AuthRepository, Scope, StoredApiKey } from '../../../src/db/auth.repository.ts';
import { createLogger } from '../../../src/logger.ts';
import { ServiceMetrics } from '../../../src/metrics/service-metrics.ts';
import { AuthService, secretHash } from '../../../src/services/auth.service.ts';
import { ProgressHub } from '../../../src/services/progress-hub.ts';

interface RouteLayer {
  route?: { path: string; methods: Record<string, boolean> };
  handle: { stack?: RouteLayer[] };
  rawPath?: string;
}

/** Every route the Express app registers, as "METHOD /path/{param}" (OpenAPI's path syntax). */
function registeredRoutes(app: Express): string[] {
  const routes: string[] = [];
  const walk = (stack: RouteLayer[], prefix: string) => {
    for (const layer of stack) {
      if (layer.route) {
        for (const method of Object.keys(layer.route.methods)) {
          if (method !== '_all') routes.push(`${method.toUpperCase()} ${prefix}${layer.route.path.replace(/:(\w+)/g, '{$1}')}`);
        }
      } else if (layer.handle.stack) {
        walk(layer.handle.stack, prefix + (layer.rawPath && layer.rawPath !== '/' ? layer.rawPath : ''));
      }
    }
  };
  walk((app as unknown as { router: { stack: RouteLayer[] } }).router.stack, '');
  return routes.sort();
}

function documentedOperations(): Map<string, { 'x-scope'?: string }> {
  const operations = new Map<string, { 'x-scope'?: string }>();
  for (const [path, item] of Object.entries(openApiDocument.paths)) {
    for (const [method, operation] of Object.entries(item)) operations.set(`${method.toUpperCase()} ${path}`, operation as { 'x-scope'?: string });
  }
  return operations;
}

/** Keys by scope for the stub repository; nothing else of the app's dependencies is reached by these requests. */
const KEYS: Record<string, Scope[]> = { 'key-with-upload-scope': ['upload'], 'key-with-read-scope': ['read'], 'key-with-admin-scope': ['admin'] };

function appWithStubs(): Express {
  const stored = new Map<string, StoredApiKey>(
    Object.entries(KEYS).map(([key, scopes], i) => [
      secretHash(key).toString('hex'),
      { id: `00000000-0000-4000-8000-00000000000${i}`, name: key, scopes, source: 'api', keyHash: secretHash(key), createdAt: new Date(), lastUsedAt: null, revokedAt: null },
    ]),
  );
  const repository = {
    findKeyByHash: async (hash: Buffer) => stored.get(hash.toString('hex')),
    touchKey: async () => {},
  } as unknown as AuthRepository;
  const unused = new Proxy({}, { get: (_target, name) => () => Promise.reject(new Error(`unexpected call: ${String(name)}`)) });
  return createApp({
    uploads: unused as never,
    lifecycle: unused as never,
    catalog: unused as never,
    detections: unused as never,
    storage: unused as never,
    analytics: unused as never,
    deadLetters: unused as never,
    auth: new AuthService(repository, { sessionTtlMs: 60_000 }),
    progress: new ProgressHub(unused as never, 1000, { warn() {}, info() {} }),
    metrics: new ServiceMetrics({ defaultMetrics: false }),
    readiness: [],
    logger: createLogger({ logLevel: 'error', logFormat: 'json' }, 'test', { silent: true }),
    settings: { maxUploadBytes: 1024, sessionTtlMs: 60_000, cookieSecure: 'auto', analyticsMaxBuckets: 100 },
    // No built web app: these checks are about the API's routes (the web app's files are public, see isPublicRequest).
    webDir: '/nonexistent/vidsense-web',
    uploadAdmission: { maxConcurrentUploads: 4, maxUploadsPerClient: 4, requestTimeoutMs: 60_000, idleTimeoutMs: 60_000, minFreeBytes: 0 },
    storageSpace: { freeBytes: async () => undefined },
  });
}

describe('OpenAPI document against the routes the app registers', () => {
  const app = appWithStubs();
  const routes = registeredRoutes(app);
  const operations = documentedOperations();

  it('documents every registered route, and no route that does not exist', () => {
    assert.ok(routes.length >= 20, `found only ${routes.length} routes: the route walk is broken`);
    assert.deepEqual(routes.filter((route) => !operations.has(route)), [], 'registered but not documented');
    assert.deepEqual([...operations.keys()].filter((operation) => !routes.includes(operation)).sort(), [], 'documented but not registered');
  });

  it('is OpenAPI 3.1 with unique operation ids and every $ref resolvable', () => {
    assert.equal(openApiDocument.openapi, '3.1.0');
    const ids = [...operations.values()].map((operation) => (operation as { operationId: string }).operationId);
    assert.equal(new Set(ids).size, ids.length);
    const refs = JSON.stringify(openApiDocument).matchAll(/"\$ref":"#\/components\/schemas\/(\w+)"/g);
    for (const [, name] of refs) assert.ok(name! in openApiDocument.components.schemas, `$ref to missing schema ${name}`);
  });

  it('marks public exactly the operations that answer without a key', () => {
    for (const [operation, details] of operations) {
      const [method, path] = operation.split(' ') as [string, string];
      assert.equal(details['x-scope'] === undefined, isPublicRequest({ method, path }), operation);
    }
  });

  describe('every route enforces what the document says (a running app, stub repositories)', () => {
    let server: Server;
    let base: string;
    before(async () => {
      server = app.listen(0, '127.0.0.1');
      await new Promise((resolve) => server.once('listening', resolve));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    after(() => new Promise<void>((resolve) => server.close(() => resolve())));

    const request = (operation: string, key?: string) => {
      const [method, path] = operation.split(' ') as [string, string];
      const url = base + path.replace(/\{\w+\}/g, '00000000-0000-4000-8000-00000000abcd');
      return fetch(url, { method, headers: key ? { authorization: `Bearer ${key}` } : {} });
    };

    it('401 without a key, with an unknown key and with a malformed header, on every guarded route', async () => {
      for (const [operation, details] of operations) {
        if (details['x-scope'] === undefined) continue;
        for (const key of [undefined, 'vsk_not-a-key-that-exists']) {
          const res = await request(operation, key);
          assert.equal(res.status, 401, `${operation} with ${key ?? 'no key'}`);
          assert.deepEqual(await res.json(), { error: { code: 'unauthorized', message: 'send a valid API key (Authorization: Bearer <key>) or sign in' } });
        }
      }
      const malformed = await fetch(`${base}/videos`, { headers: { authorization: 'Basic dXNlcjpwYXNz' } });
      assert.equal(malformed.status, 401);
      const unknownPath = await fetch(`${base}/no/such/route`);
      assert.equal(unknownPath.status, 401, 'unknown paths need a key too (their existence is not revealed)');
    });

    it('403 forbidden with a key that lacks the x-scope, on every route that names one', async () => {
      for (const [operation, details] of operations) {
        const scope = details['x-scope'];
        if (scope === undefined || scope === 'any') continue;
        for (const [key, scopes] of Object.entries(KEYS)) {
          if (scopes.includes(scope as Scope) || scopes.includes('admin')) continue;
          const res = await request(operation, key);
          assert.equal(res.status, 403, `${operation} with ${key}`);
          assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'forbidden');
        }
      }
    });
  });
});

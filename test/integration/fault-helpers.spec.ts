import assert from 'node:assert/strict';
import fs from 'node:fs';
import postgres from 'postgres';
import { createClient, SocketClosedUnexpectedlyError } from 'redis';
import { isTransientError } from '../../src/errors/transient-error.ts';
import { listBackends, terminateConnections } from '../helpers/postgres-faults.ts';
import { RedisServer } from '../helpers/redis-server.ts';
import { TcpProxy } from '../helpers/tcp-proxy.ts';

const ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

async function errorOf(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected the promise to reject');
}

function describeError(error: Error & { code?: string }): string {
  return `${error.constructor.name} name=${error.name} code=${String(error.code)} message=${error.message}`;
}

const DEBUG = !!process.env.DEBUG_FAULTS;
function note(...args: unknown[]): void {
  if (DEBUG) console.log(...args);
}

describe('fault-injection helpers', function () {
  this.timeout(30_000);

  describe('RedisServer', function () {
    let server: RedisServer;
    afterEach(async function () {
      await server?.stop();
    });

    it('runs a private server with AOF always, noeviction and no RDB snapshots', async function () {
      server = await RedisServer.start();
      assert.notEqual(server.port, 6379);
      assert.equal(server.url, `redis://127.0.0.1:${server.port}`);
      const client = createClient({ url: server.url });
      client.on('error', () => {});
      await client.connect();
      try {
        const config = { ...(await client.configGet('*')) };
        assert.equal(config.appendonly, 'yes');
        assert.equal(config.appendfsync, 'always');
        assert.equal(config['maxmemory-policy'], 'noeviction');
        assert.equal(config.save, '');
        assert.equal(config.bind, '127.0.0.1');
        assert.equal(config.dir, fs.realpathSync(server.dir));
        // noeviction with no maxmemory: writes are never refused for memory.
        assert.equal(config.maxmemory, '0');
        assert.equal(await client.set('k', 'x'.repeat(1 << 20)), 'OK');
      } finally {
        client.destroy();
      }
    });

    it('keeps a list across SIGKILL and restart on the same port and dir (AOF replay)', async function () {
      server = await RedisServer.start();
      const { port, dir } = server;
      const client = createClient({ url: server.url, socket: { reconnectStrategy: 50 } });
      const errors: Error[] = [];
      client.on('error', (error: Error) => errors.push(error));
      await client.connect();
      try {
        const items = Array.from({ length: 500 }, (_, i) => `job-${i}`);
        await client.rPush('queue:pending', items);
        await client.lMove('queue:pending', 'queue:processing:w1', 'LEFT', 'RIGHT');
        const pid = server.pid;
        assert.ok(pid);

        // A blocking reserve in flight on its own connection when the server dies.
        const blocking = client.duplicate({ socket: { reconnectStrategy: false } });
        blocking.on('error', () => {});
        await blocking.connect();
        const inFlight = errorOf(blocking.blMove('queue:empty', 'queue:processing:w2', 'RIGHT', 'LEFT', 0));

        const exit = await server.kill();
        assert.equal(exit.signal, 'SIGKILL');
        assert.equal(server.alive, false);

        const blockingError = await inFlight;
        note('node-redis, in-flight BLMOVE when redis-server is SIGKILLed:', describeError(blockingError));
        // The kernel closes a SIGKILLed redis-server's sockets; node-redis rejects the pending command with
        // the socket's own error (ECONNRESET) or SocketClosedUnexpectedlyError (whose .name is plain 'Error').
        assert.ok(blockingError.code === 'ECONNRESET' || blockingError instanceof SocketClosedUnexpectedlyError, describeError(blockingError));

        // A command on a client with offline queue disabled while the server is down.
        const offline = createClient({ url: server.url, disableOfflineQueue: true, socket: { reconnectStrategy: false } });
        offline.on('error', () => {});
        const connectError = await errorOf(offline.connect());
        note('node-redis, connect() while redis-server is down:', describeError(connectError));
        assert.equal(connectError.code, 'ECONNREFUSED');
        assert.equal(isTransientError(connectError), true);
        const afterCloseError = await errorOf(blocking.ping());
        note('node-redis, command on a client whose socket was lost (no reconnect):', describeError(afterCloseError));
        assert.equal(afterCloseError.constructor.name, 'ClientClosedError');

        await server.restart();
        assert.equal(server.port, port);
        assert.equal(server.dir, dir);
        assert.notEqual(server.pid, pid);

        // The original client (default offline queue + reconnect) reconnects on its own.
        assert.deepEqual(await client.lRange('queue:processing:w1', 0, -1), ['job-0']);
        assert.deepEqual(await client.lRange('queue:pending', 0, -1), items.slice(1));
        note('node-redis error events on the reconnecting client:', errors.map(describeError).slice(0, 3), `(${errors.length} in all)`);
        assert.ok(errors.length > 0);
      } finally {
        client.destroy();
      }
    });

    it('restarts gracefully with appendfsync everysec, and a failed start reports redis-server\'s log', async function () {
      server = await RedisServer.start({ appendfsync: 'everysec' });
      assert.match((await server.command('INFO', 'persistence')) ?? '', /^aof_enabled:1\r?$/m);
      assert.equal(await server.command('SET', 'k', 'v'), 'OK');
      await server.restart(); // graceful: SIGTERM first, then AOF replay
      assert.equal(await server.command('GET', 'k'), 'v');
      assert.ok(fs.readdirSync(server.aofDir).some((name) => name.endsWith('.manifest')));

      // A second server on the same port cannot start: the error carries redis-server's own log.
      const error = await errorOf(RedisServer.start({ port: server.port }));
      assert.match(error.message, /exited during start-up/);
      assert.match(error.message, /Address already in use/i);
    });
  });

  describe('TcpProxy in front of PostgreSQL', function () {
    let proxy: TcpProxy;
    let sql: postgres.Sql;
    afterEach(async function () {
      await sql?.end({ timeout: 1 }).catch(() => {});
      await proxy?.close();
    });

    it('forwards, then cut() refuses (ECONNREFUSED) and drops live connections, restore() reconnects', async function () {
      proxy = await TcpProxy.start({ host: '127.0.0.1', port: 5432 });
      const url = proxy.url(ADMIN_URL);
      assert.equal(url, `postgres://postgres@127.0.0.1:${proxy.port}/postgres`);
      sql = postgres(url, { max: 2, connect_timeout: 2, onnotice: () => {} });
      assert.deepEqual([...(await sql`SELECT 1 AS one`)], [{ one: 1 }]);
      assert.equal(proxy.liveConnections, 1);

      // A query running when the link is cut.
      const running = errorOf(sql`SELECT pg_sleep(5)`);
      await new Promise((resolve) => setTimeout(resolve, 200));
      await proxy.cut();
      const runningError = await running;
      note('postgres.js, query in flight when the connection is cut (FIN):', describeError(runningError));
      assert.equal(runningError.code, 'CONNECTION_CLOSED');
      assert.equal(isTransientError(runningError), true);

      // A new query while cut: the pool must open a connection, which is refused.
      const refused = await errorOf(sql`SELECT 1`);
      note('postgres.js, query while the server refuses connections:', describeError(refused));
      assert.equal(refused.code, 'ECONNREFUSED');
      assert.equal(isTransientError(refused), true);

      await proxy.restore();
      assert.deepEqual([...(await sql`SELECT 2 AS two`)], [{ two: 2 }]);
    });

    it("cut({ mode: 'reset' }) resets live and new connections (ECONNRESET)", async function () {
      proxy = await TcpProxy.start({ host: '127.0.0.1', port: 5432 });
      sql = postgres(proxy.url(ADMIN_URL), { max: 1, connect_timeout: 2, onnotice: () => {} });
      await sql`SELECT 1`;
      const running = errorOf(sql`SELECT pg_sleep(5)`);
      await new Promise((resolve) => setTimeout(resolve, 200));
      await proxy.cut({ mode: 'reset' });
      const runningError = await running;
      note('postgres.js, query in flight when the connection is reset (RST):', describeError(runningError));
      assert.equal(runningError.code, 'ECONNRESET');
      assert.equal(isTransientError(runningError), true);
      // postgres.js 3.4.9 rejects the running query on the socket's 'error' event, before its 'close':
      // a query sent in that window goes to the dying connection and is never settled (hangs forever).
      // Anything that retries must yield to the event loop first; a short back-off does.
      await new Promise((resolve) => setTimeout(resolve, 20));

      const reset = await errorOf(sql`SELECT 1`);
      note('postgres.js, connecting through a proxy that accepts and resets:', describeError(reset));
      assert.equal(isTransientError(reset), true);

      await proxy.restore();
      assert.deepEqual([...(await sql`SELECT 3 AS three`)], [{ three: 3 }]);
    });

    it('pause() turns into CONNECT_TIMEOUT for new connections, resume() lets them through', async function () {
      proxy = await TcpProxy.start({ host: '127.0.0.1', port: 5432 });
      sql = postgres(proxy.url(ADMIN_URL), { max: 1, connect_timeout: 1, onnotice: () => {} });
      proxy.pause();
      const timedOut = await errorOf(sql`SELECT 1`);
      note('postgres.js, connecting through a paused (black-holed) link:', describeError(timedOut));
      assert.equal(timedOut.code, 'CONNECT_TIMEOUT');
      assert.equal(isTransientError(timedOut), true);
      proxy.resume();
      assert.deepEqual([...(await sql`SELECT 4 AS four`)], [{ four: 4 }]);
    });

    it('works for Redis too (node-redis through the proxy, cut and restore)', async function () {
      const server = await RedisServer.start();
      proxy = await TcpProxy.start({ host: '127.0.0.1', port: server.port });
      const client = createClient({ url: proxy.url(server.url), socket: { reconnectStrategy: 50 } });
      const errors: Error[] = [];
      client.on('error', (error: Error) => errors.push(error));
      const blocking = client.duplicate();
      blocking.on('error', () => {});
      try {
        await client.connect();
        await client.set('k', 'v');
        await blocking.connect();
        const inFlight = errorOf(blocking.blPop('nothing', 0));
        await new Promise((resolve) => setTimeout(resolve, 100));
        await proxy.cut();
        const blockingError = await inFlight;
        note('node-redis, BLPOP in flight when the proxy cuts:', describeError(blockingError));
        assert.ok(blockingError instanceof SocketClosedUnexpectedlyError);
        assert.equal(blockingError.name, 'Error'); // not 'SocketClosedUnexpectedlyError': classify with instanceof
        await new Promise((resolve) => setTimeout(resolve, 200));
        note('node-redis error events while cut:', errors.map(describeError).slice(0, 3));
        await proxy.restore();
        assert.equal(await client.get('k'), 'v');
      } finally {
        if (blocking.isOpen) blocking.destroy();
        client.destroy();
        await server.stop();
      }
    });
  });

  describe('terminateConnections', function () {
    let admin: postgres.Sql;
    let sql: postgres.Sql;
    const database = `vidsense_faults_${process.pid}_${Date.now()}`;
    before(async function () {
      admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
      await admin.unsafe(`CREATE DATABASE "${database}"`);
    });
    after(async function () {
      await sql?.end({ timeout: 1 }).catch(() => {});
      await admin.unsafe(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
      await admin.end();
    });

    it('ends a running query (CONNECTION_CLOSED) and the pool reconnects, at worst after one transient error', async function () {
      const url = new URL(ADMIN_URL);
      url.pathname = `/${database}`;
      sql = postgres(url.toString(), { max: 2, connect_timeout: 2, onnotice: () => {} });
      await Promise.all([sql`SELECT 1`, sql`SELECT 1`]); // two pooled connections
      assert.equal((await listBackends(admin, database)).length, 2);

      const running = errorOf(sql`SELECT pg_sleep(5)`);
      await new Promise((resolve) => setTimeout(resolve, 200));
      const pids = await terminateConnections(admin, database);
      assert.equal(pids.length, 2);
      assert.deepEqual(await listBackends(admin, database), []);
      const runningError = await running;
      note('postgres.js, query running when its backend is terminated:', describeError(runningError));
      // The backend sends FATAL 57P01 then closes; postgres.js keeps the error until ReadyForQuery, which
      // never comes, so the query fails with CONNECTION_CLOSED and the SQLSTATE is lost.
      assert.equal(runningError.code, 'CONNECTION_CLOSED');
      assert.equal(isTransientError(runningError), true);

      // The other connection was idle. Usually postgres.js has already read its FATAL and close and the
      // next query opens a fresh connection; but if the query is dispatched before that socket is read,
      // it fails with the FATAL (PostgresError 57P01) or CONNECTION_CLOSED. Either way a retry succeeds.
      let rows: { pid: number }[];
      try {
        rows = [...(await sql<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`)];
        note('postgres.js, next query on the pool after terminate: succeeded on a new connection');
      } catch (error) {
        const e = error as Error & { code?: string };
        note('postgres.js, next query on the pool after terminate failed:', describeError(e));
        assert.ok(e.code === '57P01' || e.code === 'CONNECTION_CLOSED', describeError(e));
        assert.equal(isTransientError(e), true);
        rows = [...(await sql<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`)];
      }
      assert.ok(!pids.includes(rows[0]!.pid));
    });
  });
});

/**
 * The whole service on a Redis Cluster: real API and worker processes with REDIS_CLUSTER_NODES and
 * QUEUE_SHARDS=3 against a three-primary cluster with a replica each (started here), a primary SIGKILLed
 * while videos are in flight: every video completes with detections equal to a clean run's, row for row.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { keySlot, queueLayout } from '../../src/queue/keys.ts';
import { apiFetch, TEST_API_KEY } from '../helpers/api-client.ts';
import { createTestDatabase, detectionRows, type TestDatabase } from '../helpers/database.ts';
import { cutClip, VTEST_AVI } from '../helpers/media-fixtures.ts';
import { RedisCluster } from '../helpers/redis-cluster.ts';
import { freePort, ServiceProcess, waitFor } from '../helpers/service.ts';

describe('the pipeline on a Redis Cluster', function () {
  this.timeout(600_000);
  let tmp: string;
  let cluster: RedisCluster | undefined;
  let db: TestDatabase | undefined;
  const processes: ServiceProcess[] = [];

  before(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-cluster-'));
  });
  after(async () => {
    await Promise.all(processes.map((p) => p.stop()));
    await cluster?.stop();
    await db?.drop();
    await fs.rm(tmp, { recursive: true, force: true });
  });

  it('SIGKILL of a primary mid-run: nothing lost, every video equal to a clean run', async () => {
    cluster = await RedisCluster.start({ masters: 3, replicasPerMaster: 1 });
    db = await createTestDatabase();
    const port = await freePort();
    const baseUrl = `http://127.0.0.1:${port}`;
    const prefix = 'cluster';
    const env = {
      DATABASE_URL: db.url,
      REDIS_CLUSTER_NODES: cluster.seedList,
      QUEUE_SHARDS: '3',
      QUEUE_WAIT_REPLICAS: '1',
      REQUIRE_DURABLE_REDIS: 'true',
      QUEUE_PREFIX: prefix,
      STORAGE_DIR: path.join(tmp, 'storage'),
      KEEP_FRAMES: 'true',
      PORT: String(port),
      HOST: '127.0.0.1',
      BATCH_SIZE: '2',
      HEARTBEAT_TTL_MS: '3000',
      RECLAIM_INTERVAL_MS: '300',
      RETRY_BASE_MS: '50',
      RETRY_MAX_MS: '500',
      API_KEY: TEST_API_KEY,
      PREVIEW_CODEC: 'off',
      LOG_LEVEL: 'info',
    };
    const api = ServiceProcess.start('api', env);
    processes.push(api);
    await api.waitForLog('api listening', 120_000);
    for (let i = 0; i < 2; i += 1) {
      const worker = ServiceProcess.start('worker', env);
      processes.push(worker);
      await worker.waitForLog('worker started', 120_000);
    }
    assert.ok(api.logs.some((line) => line.includes('"redis cluster"') && line.includes('"queueShards":3')), 'the API did not run on the cluster');

    const short = await cutClip(VTEST_AVI, 2, path.join(tmp, 'vtest-2s.mp4')); // 10 frames at 5 fps
    const upload = async () => {
      const form = new FormData();
      form.append('fps', '5');
      form.append('video', new Blob([await fs.readFile(short)]), 'vtest-2s.mp4');
      const res = await apiFetch(`${baseUrl}/videos`, { method: 'POST', body: form });
      assert.equal(res.status, 202, await res.clone().text());
      return ((await res.json()) as { id: string }).id;
    };
    const completed = (id: string) =>
      waitFor(`video ${id} to complete`, async () => {
        const video = (await (await apiFetch(`${baseUrl}/videos/${id}`)).json()) as { status: string; framesDone: number; error: string | null };
        return video.status === 'completed' || video.status === 'failed' ? video : undefined;
      }, 300_000, 100);

    const reference = await upload();
    assert.equal((await completed(reference)).status, 'completed');
    const clean = await detectionRows(db.sql, reference);
    assert.ok(clean.length > 0);

    const ids: string[] = [];
    for (let i = 0; i < 6; i += 1) ids.push(await upload()); // one at a time: MAX_UPLOADS_PER_CLIENT
    const layout = queueLayout(prefix, { shards: 3, cluster: true });
    // The victim: the primary of the first video's shard, killed once some of the videos' frames are committed.
    const victimSlot = keySlot(layout.shards[layout.shardOfVideo(ids[0]!)]!.pending.detect);
    const committed = async () => (await db!.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM frames WHERE video_id <> ${reference}`)[0]!.n;
    await waitFor('progress before the kill', async () => ((await committed()) >= 8 ? true : undefined), 300_000, 50);
    const victim = (await cluster.primaries()).find(({ info }) => info.slots.some(([from, to]) => victimSlot >= from && victimSlot <= to))!.server;
    const before = await committed();
    await cluster.killPrimary(victim);
    await cluster.waitHealthy();
    await victim.restart(); // back as a replica, as an orchestrator would restart it
    assert.ok(before < ids.length * 10, 'everything was done before the kill');

    for (const id of ids) {
      const video = await completed(id);
      assert.deepEqual([video.status, video.framesDone, video.error], ['completed', 10, null], id);
      assert.deepEqual(await detectionRows(db.sql, id), clean, `video ${id} differs from the clean run`);
    }
    const topology = await cluster.topology();
    assert.equal(topology.find((node) => node.port === victim.port)?.role, 'replica', 'the failover did not happen');
    assert.ok(processes.every((p) => p.alive), 'a process died with the primary');
    const warnings = processes.flatMap((p) => p.logs).filter((line) => /"level":"warn"/.test(line) && /redis|reserv|queue/i.test(line));
    console.log(`      killed with ${before} of ${ids.length * 10} frames committed; ${warnings.length} Redis warnings logged through the failover`);
  });
});

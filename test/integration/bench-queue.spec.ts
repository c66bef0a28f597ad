import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

// npm run bench:queue with a few jobs: its one JSON line has the figures of both queues side by side on one
// Redis, and ours on a three-primary cluster, and each run's own bookkeeping shows every job acknowledged
// exactly once with nothing left in Redis.
// Timings are printed, never asserted (the host is shared).
describe('npm run bench:queue (a few jobs)', function () {
  this.timeout(180_000);

  it('prints one JSON line: each queue acknowledged every job exactly once and left nothing in Redis', async () => {
    const tsx = path.resolve('node_modules/.bin/tsx');
    const { stdout } = await run(tsx, ['bench/queue.ts'], {
      env: { ...process.env, BENCH_JOBS: '150', BENCH_ROUNDS: '1', BENCH_PRODUCERS: '3', BENCH_CONSUMERS: '4' },
      timeout: 150_000,
    });
    const lines = stdout.trim().split('\n');
    assert.equal(lines.length, 1, stdout);
    const result = JSON.parse(lines[0]!) as Record<string, any>;
    assert.equal(result.jobs, 150);
    assert.equal(result.consumers, 4);
    const systems = { vidsense: result.single.vidsense, bullmq: result.single.bullmq, 'vidsense on the cluster': result.cluster.vidsense, 'vidsense on the cluster, WAIT 1': result.cluster.vidsenseWait1 };
    assert.equal(result.cluster.shards, 3);
    for (const [system, figures] of Object.entries(systems)) {
      assert.equal(figures.rounds.length, 1, system);
      const [round] = figures.rounds;
      assert.deepEqual(
        { published: round.published, acked: round.acked, duplicates: round.duplicates, missing: round.missing, leftInRedis: round.leftInRedis },
        { published: 150, acked: 150, duplicates: 0, missing: 0, leftInRedis: 0 },
        system,
      );
      assert.equal(figures.exactlyOnce, true, system);
      assert.ok(figures.jobsPerSecond > 0 && Number.isFinite(figures.jobsPerSecond), system);
      assert.ok(round.latencyMs.p50 <= round.latencyMs.p99 && round.latencyMs.p99 <= round.latencyMs.max, system);
    }
    assert.equal(typeof result.single.ratio, 'number');
  });
});

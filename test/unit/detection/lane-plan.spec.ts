import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { availableCores, planLanes } from '../../../src/detection/detector-pool.ts';

describe('planLanes (DETECT_LANES, ORT_THREADS and the cores)', () => {
  it('plans one one-thread lane per core, up to four lanes, the cores shared out among them', () => {
    assert.deepEqual(planLanes(1), { lanes: 1, threadsPerLane: 1 });
    assert.deepEqual(planLanes(2), { lanes: 2, threadsPerLane: 1 });
    assert.deepEqual(planLanes(3), { lanes: 3, threadsPerLane: 1 });
    assert.deepEqual(planLanes(8), { lanes: 4, threadsPerLane: 2 });
    assert.deepEqual(planLanes(16), { lanes: 4, threadsPerLane: 4 });
    assert.deepEqual(planLanes(18), { lanes: 4, threadsPerLane: 4 });
  });

  it('takes DETECT_LANES as given and shares the cores among those lanes', () => {
    assert.deepEqual(planLanes(2, 1), { lanes: 1, threadsPerLane: 2 });
    assert.deepEqual(planLanes(16, 2), { lanes: 2, threadsPerLane: 8 });
    assert.deepEqual(planLanes(2, 6), { lanes: 6, threadsPerLane: 1 });
  });

  it('takes ORT_THREADS alone as one lane of that many threads (its meaning before lanes), and as each lane\'s with DETECT_LANES', () => {
    assert.deepEqual(planLanes(2, 0, 2), { lanes: 1, threadsPerLane: 2 });
    assert.deepEqual(planLanes(64, 0, 2), { lanes: 1, threadsPerLane: 2 });
    assert.deepEqual(planLanes(16, 3, 2), { lanes: 3, threadsPerLane: 2 });
  });

  it('counts an unknown or fractional core count as at least one', () => {
    assert.deepEqual(planLanes(0), { lanes: 1, threadsPerLane: 1 });
    assert.deepEqual(planLanes(2.5), { lanes: 2, threadsPerLane: 1 });
  });
});

describe('availableCores (the CPU affinity, lowered to a cgroup v2 CPU quota)', () => {
  let dir: string;
  before(async () => (dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-cpu-max-'))));
  after(async () => fs.rm(dir, { recursive: true, force: true }));
  const withCpuMax = async (content: string) => {
    const file = path.join(dir, 'cpu.max');
    await fs.writeFile(file, content);
    return availableCores(file);
  };

  it('reads a quota as whole cores, rounded up, never above the affinity', async () => {
    assert.equal(await withCpuMax('100000 100000\n'), Math.min(1, os.availableParallelism()));
    assert.equal(await withCpuMax('150000 100000\n'), Math.min(2, os.availableParallelism()));
    assert.equal(await withCpuMax(`${(os.availableParallelism() + 8) * 100000} 100000\n`), os.availableParallelism());
    assert.equal(await withCpuMax('5000 100000\n'), 1);
  });

  it('uses the affinity when there is no quota, no file or an unreadable one', async () => {
    assert.equal(await withCpuMax('max 100000\n'), os.availableParallelism());
    assert.equal(await withCpuMax('garbage'), os.availableParallelism());
    assert.equal(await availableCores(path.join(dir, 'missing')), os.availableParallelism());
  });
});

import assert from 'node:assert/strict';
import { TaskLimiter } from '../../../src/services/task-limiter.ts';

describe('TaskLimiter', () => {
  it('never runs more than its concurrency and runs every task', async () => {
    const limiter = new TaskLimiter(2);
    let active = 0;
    let peak = 0;
    const done: number[] = [];
    await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        limiter.run(async () => {
          active += 1;
          peak = Math.max(peak, active);
          await new Promise((resolve) => setTimeout(resolve, 5 + (i % 3)));
          active -= 1;
          done.push(i);
        }),
      ),
    );
    assert.equal(peak, 2);
    assert.equal(done.length, 10);
  });

  it('keeps the limit when a new task arrives just as one finishes', async () => {
    const limiter = new TaskLimiter(1);
    let active = 0;
    let peak = 0;
    const task = async () => {
      active += 1;
      peak = Math.max(peak, active);
      await Promise.resolve();
      active -= 1;
    };
    const first = limiter.run(task);
    const second = limiter.run(task);
    await first;
    const third = limiter.run(task); // arrives while the second is being handed the slot
    await Promise.all([second, third]);
    assert.equal(peak, 1);
  });

  it('idle() resolves once all tasks are done, and a failing task frees its slot', async () => {
    const limiter = new TaskLimiter(1);
    const failing = limiter.run(async () => {
      throw new Error('boom');
    });
    const after = limiter.run(async () => 'ran');
    await assert.rejects(failing, /boom/);
    assert.equal(await after, 'ran');
    await limiter.idle();
    assert.equal(limiter.size, 0);
  });
});

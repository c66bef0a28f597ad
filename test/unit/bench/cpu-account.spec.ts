import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { accountCpu, processesOfInterest, sampleCpu, type CpuSample } from '../../../bench/cpu-account.ts';

type Proc = { comm: string; ppid: number; lowPriority?: boolean; own: number; children?: number };

function sample(at: number, busy: number, total: number, processes: Record<number, Proc>, threads: Record<number, number> = {}): CpuSample {
  return {
    at,
    busy,
    total,
    processes: new Map(Object.entries(processes).map(([pid, p]) => [Number(pid), { lowPriority: false, children: 0, ...p }])),
    threads: new Map(Object.entries(threads).map(([tid, ticks]) => [Number(tid), ticks])),
  };
}

const roles = { api: 10, worker: 20, extractor: 30, laneThreadIds: [21, 22], bench: 40 };

describe('bench CPU accounting (/proc)', () => {
  it('splits core-seconds by process and thread: lanes, worker, extractor and its ffmpeg (preview apart), API and its checks', () => {
    const first = sample(0, 1000, 2000, {
      10: { comm: 'node', ppid: 1, own: 100 },
      20: { comm: 'node', ppid: 1, own: 500 },
      30: { comm: 'node', ppid: 1, own: 50 },
      40: { comm: 'node', ppid: 1, own: 10 },
      50: { comm: 'postgres', ppid: 1, own: 5 },
      60: { comm: 'redis-server', ppid: 1, own: 7 },
    }, { 20: 300, 21: 100, 22: 90 });
    // Mid-run: the extraction's ffmpeg ran and was waited for (30's cutime); the niced preview is running.
    const middle = sample(1000, 2000, 4000, {
      ...Object.fromEntries(first.processes),
      30: { comm: 'node', ppid: 1, own: 80, children: 170 },
      31: { comm: 'ffmpeg', ppid: 30, lowPriority: true, own: 20 },
    });
    // At the end the preview has ended (waited for: its 30 ticks join the extractor's cutime, of which the
    // 20 last sampled count as the preview's), and a decode check of the API is running.
    const last = sample(2000, 1000 + 2700, 2000 + 3000, {
      10: { comm: 'node', ppid: 1, own: 140, children: 25 },
      11: { comm: 'ffmpeg', ppid: 10, own: 15 },
      20: { comm: 'node', ppid: 1, own: 500 + 2200 },
      30: { comm: 'node', ppid: 1, own: 90, children: 170 + 30 },
      40: { comm: 'node', ppid: 1, own: 22 },
      50: { comm: 'postgres', ppid: 1, own: 25 },
      51: { comm: 'postgres', ppid: 1, own: 8 },
      60: { comm: 'redis-server', ppid: 1, own: 9 },
    }, { 20: 360, 21: 1100, 22: 1090 });
    const account = accountCpu([first, middle, last], roles);
    assert.deepEqual(account, {
      windowS: 2,
      coreSeconds: 30,
      busy: 27,
      idle: 3,
      lanes: 20,
      workerMainThread: 0.6,
      workerOtherThreads: 1.4,
      extractor: 0.4,
      ffmpegExtraction: 1.8,
      ffmpegPreview: 0.2,
      api: 0.4,
      apiUploadChecks: 0.4,
      postgres: 0.28,
      redis: 0.02,
      bench: 0.12,
      unaccounted: 1.38, // 27 busy, less the 25.62 above
    });
  });

  it('follows the services, their children, PostgreSQL and Redis, and nothing else', () => {
    const taken = sample(0, 0, 0, {
      10: { comm: 'node', ppid: 1, own: 0 },
      11: { comm: 'ffprobe', ppid: 10, own: 0 },
      20: { comm: 'node', ppid: 1, own: 0 },
      30: { comm: 'node', ppid: 1, own: 0 },
      31: { comm: 'nice', ppid: 30, own: 0 },
      32: { comm: 'ffmpeg', ppid: 31, own: 0 },
      40: { comm: 'node', ppid: 1, own: 0 },
      50: { comm: 'postgres', ppid: 1, own: 0 },
      60: { comm: 'redis-server', ppid: 1, own: 0 },
      70: { comm: 'sshd', ppid: 1, own: 0 },
    });
    assert.deepEqual(processesOfInterest(taken, roles).sort((a, b) => a - b), [10, 11, 20, 30, 31, 32, 40, 50, 60]);
  });

  it('reads the priority of real processes: niced or under SCHED_IDLE is lowered, the default is not', async () => {
    const children = [['sleep', '5'], ['nice', '-n', '5', 'sleep', '5'], ['chrt', '--idle', '0', 'sleep', '5']].map(([file, ...args]) => spawn(file!, args));
    try {
      await new Promise((resolve) => setTimeout(resolve, 300)); // nice and chrt have exec'd sleep by then
      const taken = sampleCpu(undefined, children.map((child) => child.pid!));
      assert.deepEqual(children.map((child) => [taken.processes.get(child.pid!)?.comm, taken.processes.get(child.pid!)?.lowPriority]), [
        ['sleep', false],
        ['sleep', true],
        ['sleep', true],
      ]);
    } finally {
      for (const child of children) child.kill();
    }
  });

  it('reads this machine: a child that burns CPU is seen under its parent, this thread counts its own time', () => {
    const before = sampleCpu({ pid: process.pid, tids: [process.pid] });
    execFileSync('sh', ['-c', 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done']);
    for (let end = Date.now() + 300; Date.now() < end; ); // this thread busy for 0.3 s
    const after = sampleCpu({ pid: process.pid, tids: [process.pid] });
    const own = after.processes.get(process.pid)!;
    assert.ok(own.children > before.processes.get(process.pid)!.children, 'the waited-for child is in cutime + cstime');
    assert.ok(after.threads.get(process.pid)! - before.threads.get(process.pid)! >= 20, 'at least 0.2 s of this thread');
    assert.ok(after.busy - before.busy >= 20 && after.total > after.busy);
  });
});

/**
 * Where a bench run's CPU went: machine-wide busy time from /proc/stat and each process's (and the detection
 * lanes' threads') CPU time from /proc, sampled during the run and differenced between two samples. Linux only,
 * and meaningful on a host given to the run (the bench's premise): /proc/stat counts every process.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks a second, as /proc counts them: USER_HZ is 100 on every Linux architecture Node runs on. */
const TICKS_PER_SECOND = 100;
const SCHED_IDLE = 5;

interface ProcessTicks {
  comm: string;
  ppid: number;
  /** Lowered priority: a nice value above 0 or the SCHED_IDLE policy (how the preview's ffmpeg runs). */
  lowPriority: boolean;
  /** utime + stime */
  own: number;
  /** cutime + cstime: children that exited and were waited for */
  children: number;
}

export interface CpuSample {
  at: number;
  /** Ticks of all CPUs: busy (not idle or waiting for I/O) and in all. */
  busy: number;
  total: number;
  processes: Map<number, ProcessTicks>;
  threads: Map<number, number>;
}

function statFields(text: string): { comm: string; fields: string[] } {
  // comm may hold spaces and parentheses: it runs from the first '(' to the last ')'.
  const close = text.lastIndexOf(')');
  return { comm: text.slice(text.indexOf('(') + 1, close), fields: text.slice(close + 2).trim().split(' ') };
}

function readTicks(file: string): ProcessTicks | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined; // gone since the directory was listed
  }
  const { comm, fields } = statFields(text);
  // Counted from the state field (the stat's third): ppid 1, utime 11, stime 12, cutime 13, cstime 14, nice 16,
  // policy 38 (5: SCHED_IDLE).
  return {
    comm,
    ppid: Number(fields[1]),
    lowPriority: Number(fields[16]) > 0 || Number(fields[38]) === SCHED_IDLE,
    own: Number(fields[11]) + Number(fields[12]),
    children: Number(fields[13]) + Number(fields[14]),
  };
}

/**
 * One sample: /proc/stat, the given threads of the given process, and every process (about 2.7 ms of CPU with
 * 90 processes) or only the given ones (`pids`): a process started since the last full sample is counted from
 * the next one on.
 */
export function sampleCpu(threadsOf?: { pid: number; tids: readonly number[] }, pids?: readonly number[]): CpuSample {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is inside user already)
  const total = cpu.slice(0, 8).reduce((a, b) => a + b, 0);
  const busy = total - cpu[3]! - cpu[4]!;
  const processes = new Map<number, ProcessTicks>();
  for (const pid of pids ?? readdirSync('/proc').filter((entry) => /^\d+$/.test(entry)).map(Number)) {
    const ticks = readTicks(`/proc/${pid}/stat`);
    if (ticks) processes.set(pid, ticks);
  }
  const threads = new Map<number, number>();
  for (const tid of threadsOf?.tids ?? []) {
    const ticks = readTicks(`/proc/${threadsOf!.pid}/task/${tid}/stat`);
    if (ticks) threads.set(tid, ticks.own);
  }
  return { at: Date.now(), busy, total, processes, threads };
}

const NAMED = ['postgres', 'redis-server'];

/** The processes accountCpu reads in a sample: the services, their descendants, PostgreSQL's and Redis'. */
export function processesOfInterest(sample: CpuSample, roles: AccountRoles): number[] {
  const parents = [roles.api, roles.worker, roles.extractor];
  const named = [...sample.processes].filter(([, p]) => NAMED.includes(p.comm)).map(([pid]) => pid);
  return [...new Set([...parents, roles.bench, ...parents.flatMap((pid) => descendantsIn(sample, pid)), ...named])];
}

function descendantsIn(sample: CpuSample, root: number): number[] {
  const found: number[] = [];
  for (let frontier = [root]; frontier.length > 0; ) {
    const next = [...sample.processes].filter(([, p]) => frontier.includes(p.ppid)).map(([pid]) => pid);
    found.push(...next);
    frontier = next;
  }
  return found;
}

export interface AccountRoles {
  api: number;
  /** The detection worker; the same pid as the extractor when one worker takes both kinds. */
  worker: number;
  extractor: number;
  laneThreadIds: readonly number[];
  bench: number;
}

/**
 * Core-seconds between the first and last samples, by who spent them. ffmpeg is every descendant of the
 * extractor with the children it already waited for: the preview's encode (the one at lowered priority) and
 * the rest, the extraction. The API's children are the upload's checks (ffprobe and the two decode checks).
 * postgres and redis are their processes by name (backends that ended meanwhile are lost to `unaccounted`).
 * The worker's time is split into its lanes' threads, its main thread (JavaScript: jobs, queue, database,
 * garbage collection) and its other threads (libuv's pool, where frames are read and decoded; V8's helpers).
 */
export function accountCpu(samples: readonly CpuSample[], roles: AccountRoles) {
  const from = samples[0]!;
  const to = samples.at(-1)!;
  const seconds = (ticks: number) => Number((ticks / TICKS_PER_SECOND).toFixed(2));
  const ownDelta = (pid: number) => (to.processes.get(pid)?.own ?? 0) - (from.processes.get(pid)?.own ?? 0);
  const childrenDelta = (pid: number) => (to.processes.get(pid)?.children ?? 0) - (from.processes.get(pid)?.children ?? 0);
  // The preview's encode runs at lowered priority (PREVIEW_NICENESS, PREVIEW_CPU_POLICY): its CPU as last
  // sampled, so at most a sample's worth short when it ended within the window.
  const previewTicks = new Map<number, number>();
  for (const sample of samples.slice(1)) {
    for (const pid of descendantsIn(sample, roles.extractor)) {
      const child = sample.processes.get(pid)!;
      if (child.lowPriority && child.comm === 'ffmpeg') previewTicks.set(pid, child.own - (from.processes.get(pid)?.own ?? 0));
    }
  }
  const preview = [...previewTicks.values()].reduce((a, b) => a + b, 0);
  const byName = (name: string) => [...to.processes].filter(([, p]) => p.comm === name).reduce((sum, [pid]) => sum + ownDelta(pid), 0);

  // Children's time: those still running, and those that ended and were waited for.
  const childrenOf = (pid: number) => descendantsIn(to, pid).reduce((sum, child) => sum + ownDelta(child), 0) + childrenDelta(pid);
  const lanes = roles.laneThreadIds.reduce((sum, tid) => sum + (to.threads.get(tid) ?? 0) - (from.threads.get(tid) ?? 0), 0);
  const workerMain = (to.threads.get(roles.worker) ?? 0) - (from.threads.get(roles.worker) ?? 0);
  const worker = ownDelta(roles.worker);
  const extractor = roles.extractor === roles.worker ? 0 : ownDelta(roles.extractor);
  const accounted = {
    lanes,
    workerMainThread: workerMain,
    workerOtherThreads: worker - lanes - workerMain,
    extractor,
    ffmpegExtraction: childrenOf(roles.extractor) - preview,
    ffmpegPreview: preview,
    api: ownDelta(roles.api),
    apiUploadChecks: childrenOf(roles.api),
    postgres: byName('postgres'),
    redis: byName('redis-server'),
    bench: ownDelta(roles.bench),
  };
  const busy = to.busy - from.busy;
  const sum = Object.values(accounted).reduce((a, b) => a + b, 0);
  return {
    windowS: Number(((to.at - from.at) / 1000).toFixed(2)),
    coreSeconds: seconds(to.total - from.total),
    busy: seconds(busy),
    idle: seconds(to.total - from.total - busy),
    ...Object.fromEntries(Object.entries(accounted).map(([name, ticks]) => [name, seconds(ticks)])),
    unaccounted: seconds(busy - sum),
  };
}

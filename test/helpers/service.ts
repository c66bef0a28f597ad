import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TEST_API_KEY } from './api-client.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** A real service process (api, worker or all-in-one) started the way production starts it. */
export class ServiceProcess {
  readonly logs: string[] = [];
  private readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(
    readonly role: string,
    readonly child: ChildProcess,
  ) {
    const collect = (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n')) if (line.trim()) this.logs.push(line);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  /**
   * API_KEY is the tests' admin key (TEST_API_KEY) unless env sets it; an empty value means none, so the
   * API bootstraps a key of its own (point API_KEY_FILE into a temporary directory then).
   * `netns`: run it inside that network namespace (`ip netns exec`, which execs: the pid is the service's).
   */
  static start(role: 'api' | 'worker' | 'all-in-one', env: Record<string, string>, options: { netns?: string } = {}): ServiceProcess {
    const command = [process.execPath, '--import', 'tsx', path.join('src', 'main', `${role}.ts`)];
    if (options.netns) command.unshift('ip', 'netns', 'exec', options.netns);
    const child = spawn(command[0]!, command.slice(1), {
      cwd: repoRoot,
      env: { ...process.env, NODE_ENV: 'test', LOG_FORMAT: 'json', LOG_LEVEL: 'info', API_KEY: TEST_API_KEY, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new ServiceProcess(role, child);
  }

  /**
   * The role as the Docker images run it: `node dist/main/<role>.js` in `appDir`, a directory laid out like
   * the images' /app (compiled dist/ and a production node_modules).
   */
  static startCompiled(role: 'api' | 'worker' | 'all-in-one', appDir: string, env: Record<string, string>): ServiceProcess {
    const child = spawn(process.execPath, [path.join('dist', 'main', `${role}.js`)], {
      cwd: appDir,
      env: { ...process.env, NODE_ENV: 'production', LOG_FORMAT: 'json', LOG_LEVEL: 'info', API_KEY: TEST_API_KEY, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new ServiceProcess(role, child);
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves when a log line contains `text`; rejects if the process exits or time runs out. */
  async waitForLog(text: string, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.logs.some((line) => line.includes(text))) return;
      if (!this.alive) throw new Error(`${this.role} exited before logging "${text}":\n${this.logs.slice(-20).join('\n')}`);
      await sleep(50);
    }
    throw new Error(`${this.role} did not log "${text}" within ${timeoutMs} ms:\n${this.logs.slice(-20).join('\n')}`);
  }

  kill(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  waitForExit(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return this.exited;
  }

  async stop(): Promise<void> {
    if (!this.alive) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `probe` until it returns a value (not undefined) or the timeout passes. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await sleep(intervalMs);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

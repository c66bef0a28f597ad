import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * A private redis-server for fault-injection tests: its own loopback port and directory, AOF on
 * (appendfsync always by default), noeviction, no RDB snapshots. Tests may SIGKILL it and restart it
 * on the same port and directory, so Redis replays the AOF exactly as a crashed production Redis would.
 *
 * Never touches the shared Redis on 6379. Every child is tracked and SIGKILLed in a process 'exit'
 * hook as a last resort, and the directories this helper created are removed there too.
 */

export interface RedisServerOptions {
  /** AOF fsync policy; default 'always' (every write is on disk before Redis replies). */
  appendfsync?: 'always' | 'everysec';
  /** Data directory (AOF lives in <dir>/appendonlydir). Default: a fresh temp dir, removed by stop(). A given dir is kept. */
  dir?: string;
  /** Loopback port; default a free one. */
  port?: number;
  /** Extra redis-server arguments, e.g. ['--maxmemory', '10mb']. */
  args?: string[];
  /** How long start()/restart() wait for PING = PONG and loading:0; default 15 s. */
  readyTimeoutMs?: number;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const HOST = '127.0.0.1';
const REDIS_BIN = process.env.REDIS_SERVER_BIN ?? 'redis-server';

// Last-resort cleanup: processes and owned directories still around when the test process exits.
const liveChildren = new Set<ChildProcess>();
const ownedDirs = new Set<string>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of liveChildren) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const dir of ownedDirs) {
      try {
        fs.rmSync(dir, { recursive: true, force: true });
      } catch {
        // best effort
      }
    }
  });
}

export class RedisServer {
  private child: ChildProcess | undefined;
  private exited: Promise<ExitInfo> = Promise.resolve({ code: null, signal: null });
  private output = '';
  private stopped = false;

  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly ownsDir: boolean,
    private readonly args: string[],
    private readonly readyTimeoutMs: number,
  ) {}

  /** Starts a private redis-server and resolves once it answers PING with PONG and has finished loading. */
  static async start(options: RedisServerOptions = {}): Promise<RedisServer> {
    installExitHook();
    const ownsDir = options.dir === undefined;
    const dir = options.dir ?? (await fsp.mkdtemp(path.join(os.tmpdir(), 'vidsense-redis-')));
    if (ownsDir) ownedDirs.add(dir);
    else await fsp.mkdir(dir, { recursive: true });
    const args = [
      '--appendonly', 'yes',
      '--appendfsync', options.appendfsync ?? 'always',
      '--maxmemory-policy', 'noeviction',
      '--save', '',
      ...(options.args ?? []),
    ];
    const readyTimeoutMs = options.readyTimeoutMs ?? 15_000;
    // A free port found by probing can be taken before redis binds it; retry only when we chose it.
    const attempts = options.port === undefined ? 5 : 1;
    let lastError: unknown;
    for (let attempt = 0; attempt < attempts; attempt += 1) {
      const port = options.port ?? (await freeLoopbackPort());
      const server = new RedisServer(port, dir, ownsDir, args, readyTimeoutMs);
      try {
        await server.launch();
        return server;
      } catch (error) {
        lastError = error;
        await server.kill('SIGKILL').catch(() => {});
        if (!/address already in use/i.test(String(error))) break;
      }
    }
    if (ownsDir) {
      ownedDirs.delete(dir);
      await fsp.rm(dir, { recursive: true, force: true });
    }
    throw lastError;
  }

  /** redis://127.0.0.1:<port> */
  get url(): string {
    return `redis://${HOST}:${this.port}`;
  }

  get host(): string {
    return HOST;
  }

  /** The server's log file (appended across restarts). */
  get logFile(): string {
    return path.join(this.dir, 'redis-server.log');
  }

  /** The multi-part AOF directory Redis 7 writes (base + incr files + manifest). */
  get aofDir(): string {
    return path.join(this.dir, 'appendonlydir');
  }

  get pid(): number | undefined {
    return this.alive ? this.child?.pid : undefined;
  }

  get alive(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The last `lines` lines of the log file plus anything redis printed on stdout/stderr (startup errors). */
  logTail(lines = 30): string {
    let log = '';
    try {
      log = fs.readFileSync(this.logFile, 'utf8');
    } catch {
      // not written yet
    }
    const text = [log.trimEnd(), this.output.trimEnd()].filter(Boolean).join('\n');
    return text.split('\n').slice(-lines).join('\n');
  }

  /** Sends `signal` (default SIGKILL: a crash, no AOF rewrite or shutdown save) and waits for the process to exit. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<ExitInfo> {
    if (this.alive) this.child!.kill(signal);
    return this.exited;
  }

  /**
   * Starts redis-server again on the same port and directory, so it replays the AOF; resolves once it
   * answers PONG and INFO persistence shows loading:0. A server still running is first shut down
   * gracefully (SIGTERM); to simulate a crash, call kill() first.
   */
  async restart(): Promise<void> {
    if (this.stopped) throw new Error('RedisServer.restart() after stop()');
    if (this.alive) await this.terminate();
    await this.launch();
  }

  /** Graceful shutdown (SIGTERM, SIGKILL after 5 s) and removal of the temp dir if this helper made it. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.terminate();
    if (this.ownsDir) {
      await fsp.rm(this.dir, { recursive: true, force: true });
      ownedDirs.delete(this.dir);
    }
  }

  /** One command over a raw connection (no client library): the reply as a string, an error reply as a rejected Error. */
  command(...args: string[]): Promise<string | null> {
    return rawCommand(this.port, args, 2_000);
  }

  private async terminate(): Promise<void> {
    if (!this.alive) return;
    this.child!.kill('SIGTERM');
    const timer = setTimeout(() => {
      if (this.alive) this.child!.kill('SIGKILL');
    }, 5_000);
    await this.exited;
    clearTimeout(timer);
  }

  private async launch(): Promise<void> {
    this.output = '';
    const child = spawn(
      REDIS_BIN,
      ['--port', String(this.port), '--bind', HOST, '--dir', this.dir, '--logfile', this.logFile, '--daemonize', 'no', ...this.args],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.child = child;
    liveChildren.add(child);
    const collect = (chunk: Buffer) => {
      this.output = (this.output + chunk.toString()).slice(-20_000);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    this.exited = new Promise<ExitInfo>((resolve) => {
      child.once('exit', (code, signal) => {
        liveChildren.delete(child);
        resolve({ code, signal });
      });
      child.once('error', (error) => {
        liveChildren.delete(child);
        this.output += `\nspawn ${REDIS_BIN} failed: ${error.message}`;
        resolve({ code: null, signal: null });
      });
    });
    await this.waitReady();
  }

  private async waitReady(): Promise<void> {
    const deadline = Date.now() + this.readyTimeoutMs;
    let last = 'no answer yet';
    while (Date.now() < deadline) {
      if (!this.alive) {
        // The 'exit' event may lag the exit status by a tick; let it settle so logTail is complete.
        await Promise.race([this.exited, sleep(200)]);
        throw new Error(`redis-server on port ${this.port} exited during start-up:\n${this.logTail()}`);
      }
      try {
        const pong = await rawCommand(this.port, ['PING'], 1_000);
        if (pong === 'PONG') {
          // INFO's default sections hold both server (process_id) and persistence (loading).
          const info = (await rawCommand(this.port, ['INFO'], 1_000)) ?? '';
          const pid = /^process_id:(\d+)\r?$/m.exec(info)?.[1];
          if (pid !== String(this.child?.pid)) {
            // Another process answers on this port (ours will fail to bind and exit).
            last = `port ${this.port} is answered by another redis-server (pid ${pid})`;
          } else if (/^loading:0\r?$/m.test(info) && !/^async_loading:1\r?$/m.test(info)) {
            return;
          } else {
            last = 'still loading the AOF';
          }
        } else {
          last = `PING answered ${String(pong)}`;
        }
      } catch (error) {
        last = (error as Error).message; // ECONNREFUSED before bind, "LOADING ..." while replaying
      }
      await sleep(25);
    }
    throw new Error(`redis-server on port ${this.port} not ready within ${this.readyTimeoutMs} ms (${last}):\n${this.logTail()}`);
  }
}

/** A port that was free on 127.0.0.1 a moment ago. */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Sends one RESP command and parses one reply (simple string, error, integer or bulk string). */
function rawCommand(port: number, args: string[], timeoutMs: number): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: HOST, port });
    let buffer = Buffer.alloc(0);
    const finish = (error: Error | null, value?: string | null) => {
      socket.destroy();
      clearTimeout(timer);
      if (error) reject(error);
      else resolve(value ?? null);
    };
    const timer = setTimeout(() => finish(new Error(`no reply to ${args[0]} within ${timeoutMs} ms`)), timeoutMs);
    socket.on('error', (error) => finish(error));
    socket.on('close', () => finish(new Error(`connection closed before a reply to ${args[0]}`)));
    socket.on('data', (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      const eol = buffer.indexOf('\r\n');
      if (eol < 0) return;
      const head = buffer.subarray(1, eol).toString();
      switch (String.fromCharCode(buffer[0]!)) {
        case '+':
        case ':':
          return finish(null, head);
        case '-':
          return finish(new Error(head));
        case '$': {
          const length = Number(head);
          if (length < 0) return finish(null, null);
          if (buffer.length < eol + 2 + length + 2) return; // wait for the rest
          return finish(null, buffer.subarray(eol + 2, eol + 2 + length).toString());
        }
        default:
          return finish(new Error(`unexpected reply: ${buffer.toString().slice(0, 100)}`));
      }
    });
    const payload = `*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`;
    socket.write(payload);
  });
}

import net from 'node:net';

/**
 * A loopback TCP proxy in front of a PostgreSQL or Redis server, to make it unreachable mid-run
 * without touching the (shared) server: point the code under test at proxy.url(realUrl), then
 *
 *   cut()      live connections are dropped and new ones refused (ECONNREFUSED) until restore();
 *   cut({ mode: 'reset' })  the same, but live ones get a TCP RST and new ones are accepted and
 *              reset at once (ECONNRESET) instead of refused;
 *   pause()    connections stay open but no byte moves either way, and new connections hang: a
 *              network partition, seen by clients only as time-outs; resume() lets it all through;
 *   restore()  accepts and forwards again (also resumes a pause).
 */

export interface ProxyTarget {
  host: string;
  port: number;
}

export interface CutOptions {
  /** 'refuse' (default): live connections closed (FIN), listener closed so connects get ECONNREFUSED.
   *  'reset': live connections reset (RST), new connections accepted and reset at once. */
  mode?: 'refuse' | 'reset';
}

interface Pipe {
  client: net.Socket;
  upstream: net.Socket;
}

const HOST = '127.0.0.1';

export class TcpProxy {
  private server: net.Server;
  private readonly pipes = new Set<Pipe>();
  private state: 'open' | 'refusing' | 'resetting' | 'closed' = 'open';
  private paused = false;
  private accepted = 0;

  private constructor(
    readonly target: ProxyTarget,
    readonly port: number,
    server: net.Server,
  ) {
    this.server = server;
  }

  /** Listens on a free port of 127.0.0.1 (or `port`) and forwards every connection to `target`. */
  static async start(target: ProxyTarget, options: { port?: number } = {}): Promise<TcpProxy> {
    let proxy: TcpProxy | undefined;
    const server = net.createServer((socket) => proxy!.onConnection(socket));
    const port = await listen(server, options.port ?? 0);
    proxy = new TcpProxy(target, port, server);
    return proxy;
  }

  get host(): string {
    return HOST;
  }

  /** `databaseOrRedisUrl` with its host and port replaced by the proxy's (user, password, path, query kept). */
  url(databaseOrRedisUrl: string): string {
    const url = new URL(databaseOrRedisUrl);
    url.hostname = HOST;
    url.port = String(this.port);
    return url.toString();
  }

  /** Connections currently forwarded. */
  get liveConnections(): number {
    return this.pipes.size;
  }

  /** Connections accepted since start (including ones reset while cut). */
  get totalConnections(): number {
    return this.accepted;
  }

  get isCut(): boolean {
    return this.state === 'refusing' || this.state === 'resetting';
  }

  /** Drops every live connection and refuses (or resets) new ones until restore(). */
  async cut(options: CutOptions = {}): Promise<void> {
    this.assertNotClosed();
    const mode = options.mode ?? 'refuse';
    if (mode === 'refuse' && this.state !== 'refusing') {
      this.state = 'refusing';
      this.dropAll(false);
      // close()'s callback waits for the server's connections to end: they were just destroyed.
      await closeListener(this.server);
    } else if (mode === 'reset') {
      if (this.state === 'refusing') await this.relisten();
      this.state = 'resetting';
    }
    this.dropAll(mode === 'reset');
  }

  /** Accepts and forwards again (a paused proxy is resumed too). */
  async restore(): Promise<void> {
    this.assertNotClosed();
    if (this.state === 'refusing') await this.relisten();
    this.state = 'open';
    this.resume();
  }

  /** Stops moving bytes in both directions; connections stay open; new ones are accepted but not forwarded. */
  pause(): void {
    this.assertNotClosed();
    this.paused = true;
    for (const { client, upstream } of this.pipes) {
      client.pause();
      upstream.pause();
    }
  }

  /** Undoes pause(): buffered bytes flow on, held connections are forwarded. */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    for (const { client, upstream } of this.pipes) {
      client.resume();
      upstream.resume();
    }
  }

  /** Destroys every connection and stops listening. Idempotent. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    const wasListening = this.state !== 'refusing';
    this.state = 'closed';
    this.dropAll(false);
    if (wasListening) await closeListener(this.server);
  }

  private assertNotClosed(): void {
    if (this.state === 'closed') throw new Error('TcpProxy is closed');
  }

  private async relisten(): Promise<void> {
    this.server = net.createServer((socket) => this.onConnection(socket));
    await listen(this.server, this.port);
  }

  private dropAll(reset: boolean): void {
    for (const { client, upstream } of this.pipes) {
      if (reset) {
        client.resetAndDestroy();
        upstream.resetAndDestroy();
      } else {
        client.destroy();
        upstream.destroy();
      }
    }
    this.pipes.clear();
  }

  private onConnection(client: net.Socket): void {
    this.accepted += 1;
    if (this.state !== 'open') {
      client.on('error', () => {});
      client.resetAndDestroy();
      return;
    }
    client.setNoDelay(true);
    const upstream = net.connect({ host: this.target.host, port: this.target.port });
    upstream.setNoDelay(true);
    const pipe: Pipe = { client, upstream };
    this.pipes.add(pipe);
    const teardown = () => {
      this.pipes.delete(pipe);
      client.destroy();
      upstream.destroy();
    };
    // Errors on either side (target gone, client reset) end the pair; nothing to report.
    client.on('error', teardown);
    upstream.on('error', teardown);
    client.on('close', teardown);
    upstream.on('close', teardown);
    forward(client, upstream, () => this.paused);
    forward(upstream, client, () => this.paused);
    if (this.paused) {
      client.pause();
      upstream.pause();
    }
  }
}

/** Copies `from` to `to` with backpressure; half-closes `to` when `from` ends. */
function forward(from: net.Socket, to: net.Socket, isPaused: () => boolean): void {
  from.on('data', (chunk: Buffer) => {
    if (!to.write(chunk)) {
      from.pause();
      to.once('drain', () => {
        if (!isPaused()) from.resume();
      });
    }
  });
  from.on('end', () => to.end());
}

function listen(server: net.Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, HOST, () => {
      server.off('error', reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}

function closeListener(server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
  });
}

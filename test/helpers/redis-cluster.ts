import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { promisify } from 'node:util';
import { RedisServer } from './redis-server.ts';

/**
 * A private Redis Cluster for tests: `masters` primaries, each with `replicasPerMaster` replicas, every
 * node a RedisServer (its own loopback port and directory, AOF on, noeviction), joined with
 * `redis-cli --cluster create`. Tests may SIGKILL a primary and wait for its replica to take over.
 *
 * A cluster node also listens on port + 10000 (the cluster bus), so ports are chosen below 55535 with
 * both numbers free.
 */
export interface RedisClusterOptions {
  masters?: number;
  replicasPerMaster?: number;
  /** cluster-node-timeout: how long a primary may be unreachable before its replica is promoted. Default 1000 ms. */
  nodeTimeoutMs?: number;
}

export interface ClusterNodeInfo {
  id: string;
  port: number;
  role: 'master' | 'replica';
  /** For a replica, the id of its primary. */
  masterId: string | null;
  failed: boolean;
  /** Slot ranges served by a primary, e.g. [[0, 5460]]. */
  slots: Array<[number, number]>;
}

const HOST = '127.0.0.1';
const run = promisify(execFile);

export class RedisCluster {
  private constructor(
    readonly nodes: RedisServer[],
    private readonly nodeTimeoutMs: number,
  ) {}

  static async start(options: RedisClusterOptions = {}): Promise<RedisCluster> {
    const masters = options.masters ?? 3;
    const replicas = options.replicasPerMaster ?? 1;
    const nodeTimeoutMs = options.nodeTimeoutMs ?? 1000;
    const nodes: RedisServer[] = [];
    const args = ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', String(nodeTimeoutMs), '--appendfsync', 'always'];
    try {
      for (let i = 0; i < masters * (1 + replicas); i += 1) {
        // A port found free can be taken before redis binds it (or its bus port): then another pair is tried.
        for (let attempt = 1; ; attempt += 1) {
          const [port] = await clusterPorts(1, nodes.map((node) => node.port));
          try {
            nodes.push(await RedisServer.start({ port: port!, args }));
            break;
          } catch (error) {
            if (attempt === 5 || !/address already in use/i.test(String(error))) throw error;
          }
        }
      }
      await run('redis-cli', ['--cluster', 'create', ...nodes.map((node) => `${HOST}:${node.port}`), '--cluster-replicas', String(replicas), '--cluster-yes'], { timeout: 30_000 });
      const cluster = new RedisCluster(nodes, nodeTimeoutMs);
      await cluster.waitHealthy(30_000);
      return cluster;
    } catch (error) {
      await Promise.all(nodes.map((node) => node.stop()));
      throw error;
    }
  }

  /** Seed addresses for a cluster client (`createCluster({ rootNodes })`). */
  get rootNodes(): Array<{ url: string }> {
    return this.nodes.map((node) => ({ url: node.url }));
  }

  /** REDIS_CLUSTER_NODES-style list: host:port,host:port,... */
  get seedList(): string {
    return this.nodes.map((node) => `${HOST}:${node.port}`).join(',');
  }

  /** The cluster's view from any live node (CLUSTER NODES). */
  async topology(): Promise<ClusterNodeInfo[]> {
    let lastError: unknown;
    for (const node of this.nodes.filter((n) => n.alive)) {
      try {
        return parseClusterNodes((await node.command('CLUSTER', 'NODES')) ?? '');
      } catch (error) {
        lastError = error;
      }
    }
    throw new Error(`no live cluster node answered CLUSTER NODES: ${String(lastError)}`);
  }

  /** The live primaries, each with the RedisServer running it. */
  async primaries(): Promise<Array<{ info: ClusterNodeInfo; server: RedisServer }>> {
    const topology = await this.topology();
    return topology
      .filter((info) => info.role === 'master' && !info.failed && info.slots.length > 0)
      .map((info) => ({ info, server: this.nodes.find((node) => node.port === info.port)! }))
      .filter(({ server }) => server !== undefined && server.alive);
  }

  /** SIGKILLs a primary (a crash); its replica takes over after the node timeout (see waitHealthy). */
  async killPrimary(server: RedisServer): Promise<void> {
    await server.kill('SIGKILL');
  }

  /**
   * Resolves once every live node reports cluster_state:ok and all 16384 slots are served by live
   * primaries (after a kill, that means a replica was promoted).
   */
  async waitHealthy(timeoutMs = 10 * this.nodeTimeoutMs + 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      try {
        const live = this.nodes.filter((node) => node.alive);
        const infos = await Promise.all(live.map((node) => node.command('CLUSTER', 'INFO')));
        const okEverywhere = infos.every((info) => /cluster_state:ok/.test(info ?? ''));
        const served = (await this.primaries()).reduce((sum, { info }) => sum + info.slots.reduce((n, [from, to]) => n + to - from + 1, 0), 0);
        if (okEverywhere && served === 16384) return;
        last = `state ok on all live nodes: ${okEverywhere}, slots served by live primaries: ${served}`;
      } catch (error) {
        last = (error as Error).message;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`cluster not healthy within ${timeoutMs} ms (${last})`);
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.stop()));
  }
}

/** Parses CLUSTER NODES output. */
export function parseClusterNodes(text: string): ClusterNodeInfo[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const [id, address, flags, master, , , , , ...slotFields] = line.trim().split(' ');
      const port = Number(/:(\d+)@/.exec(address ?? '')?.[1]);
      const flagSet = new Set((flags ?? '').split(','));
      const slots = slotFields
        .filter((field) => !field.startsWith('['))
        .map((field): [number, number] => {
          const [from, to] = field.split('-').map(Number);
          return [from!, to ?? from!];
        });
      return {
        id: id!,
        port,
        role: flagSet.has('master') ? 'master' : 'replica',
        masterId: master === '-' ? null : (master ?? null),
        failed: flagSet.has('fail') || flagSet.has('fail?'),
        slots,
      };
    });
}

/**
 * `count` loopback ports p, other than `taken` and 10000 apart from them, where both p and p + 10000 (the cluster
 * bus) are free now: below the kernel's ephemeral range where it leaves room (from 10000 up, both ports under
 * it), so an outgoing connection's local port cannot take one between this check and redis binding it.
 */
async function clusterPorts(count: number, taken: readonly number[] = []): Promise<number[]> {
  const ephemeralFrom = await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
    .then((text) => Number(text.trim().split(/\s+/)[0]))
    .catch(() => NaN);
  const [from, span] = ephemeralFrom - 10_000 - 10_000 >= 1000 ? [10_000, ephemeralFrom - 20_000] : [20_000, 30_000];
  const ports: number[] = [];
  const clashes = (port: number) => [...taken, ...ports].some((other) => [port, port + 10_000, port - 10_000].includes(other));
  while (ports.length < count) {
    const port = from + Math.floor(Math.random() * span);
    if (clashes(port)) continue;
    if ((await isFree(port)) && (await isFree(port + 10_000))) ports.push(port);
  }
  return ports;
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, HOST, () => server.close(() => resolve(true)));
  });
}

/** Redis Cluster's key slot: CRC16 (XMODEM) of the hash tag (or the whole key) modulo 16384. */
export function keySlotOf(key: string): number {
  const open = key.indexOf('{');
  const close = open >= 0 ? key.indexOf('}', open + 1) : -1;
  const hashed = open >= 0 && close > open + 1 ? key.slice(open + 1, close) : key;
  let crc = 0;
  for (const byte of Buffer.from(hashed)) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit += 1) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}

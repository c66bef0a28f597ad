/**
 * Hosts on one machine for multi-host tests: a network namespace per host, each joined by a veth pair to a
 * bridge in a switch namespace of its own, on a private /24 that exists only inside these namespaces. The
 * machine's own namespace gets no interface: the test process reaches the hosts only through Unix sockets
 * (filesystem objects, which namespaces do not separate). Names carry the process id and a random tag, so
 * concurrent runs never meet; destroy() kills every process left in the namespaces and deletes them (the
 * veth pairs and the bridge go with them).
 */
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';

/** The lab's subnet: private, and routed nowhere but between the lab's own namespaces. */
const SUBNET = '10.213.0';

async function ip(...args: string[]): Promise<string> {
  return (await execa('ip', args)).stdout;
}

/** Why namespaces cannot be used here, or undefined when they can (root, and `ip netns add` works). */
export async function netnsUnavailable(): Promise<string | undefined> {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'network namespaces need root (ip netns add)';
  const probe = `vsprobe-${process.pid}-${randomBytes(3).toString('hex')}`;
  try {
    await ip('netns', 'add', probe);
  } catch (error) {
    return `ip netns add failed: ${(error as { stderr?: string }).stderr || (error as Error).message}`;
  }
  await ip('netns', 'del', probe).catch(() => undefined);
  return undefined;
}

const liveLabs = new Set<NetnsLab>();
process.on('exit', () => {
  for (const lab of liveLabs) lab.destroySync();
});

export class NetnsLab {
  private readonly tag = `vs${process.pid}-${randomBytes(3).toString('hex')}`;
  private readonly created: string[] = [];
  private readonly children = new Set<ChildProcess>();

  private constructor(readonly hosts: readonly string[]) {}

  /** Creates the switch and one namespace per host, host i at 10.213.0.(i+1). */
  static async create(hosts: string[]): Promise<NetnsLab> {
    if (new Set(hosts).size !== hosts.length || hosts.some((h) => !/^[a-z0-9]{1,8}$/.test(h))) throw new Error(`host names must be distinct, 1-8 of [a-z0-9]: ${hosts.join(', ')}`);
    const lab = new NetnsLab(hosts);
    try {
      const sw = lab.switchNs;
      await lab.addNamespace(sw);
      await ip('-n', sw, 'link', 'add', 'br0', 'type', 'bridge');
      await ip('-n', sw, 'link', 'set', 'br0', 'up');
      for (const [index, host] of hosts.entries()) {
        const ns = lab.ns(host);
        await lab.addNamespace(ns);
        await ip('-n', ns, 'link', 'set', 'lo', 'up');
        // Both ends are created inside the lab's namespaces: nothing appears in the machine's own.
        await ip('-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', lab.port(host), 'netns', sw);
        await ip('-n', ns, 'addr', 'add', `${SUBNET}.${index + 1}/24`, 'dev', 'eth0');
        await ip('-n', ns, 'link', 'set', 'eth0', 'up');
        await ip('-n', sw, 'link', 'set', lab.port(host), 'master', 'br0');
        await ip('-n', sw, 'link', 'set', lab.port(host), 'up');
      }
      return lab;
    } catch (error) {
      await lab.destroy();
      throw error;
    }
  }

  get switchNs(): string {
    return `${this.tag}-sw`;
  }

  ns(host: string): string {
    if (!this.hosts.includes(host)) throw new Error(`no host ${host}`);
    return `${this.tag}-${host}`;
  }

  address(host: string): string {
    this.ns(host); // throws for a host the lab does not have
    return `${SUBNET}.${this.hosts.indexOf(host) + 1}`;
  }

  /** The host's port on the switch (inside the switch namespace). */
  private port(host: string): string {
    return `p-${host}`;
  }

  /** Starts a process on a host (`ip netns exec`, which execs it: the child's pid is the process's own). */
  spawn(host: string, command: string, args: string[], options: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.ns(host), command, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...options });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** Runs a command on a host to completion. */
  async run(host: string, command: string, args: string[]): Promise<string> {
    return (await execa('ip', ['netns', 'exec', this.ns(host), command, ...args])).stdout;
  }

  /** Unplugs the host's cable: its switch port goes down and every packet to or from it is dropped. */
  async cut(host: string): Promise<void> {
    await ip('-n', this.switchNs, 'link', 'set', this.port(host), 'down');
  }

  async restore(host: string): Promise<void> {
    await ip('-n', this.switchNs, 'link', 'set', this.port(host), 'up');
  }

  /** Processes running in a host's namespace. */
  async pids(host: string): Promise<number[]> {
    return (await ip('netns', 'pids', this.ns(host)).catch(() => '')).split('\n').filter(Boolean).map(Number);
  }

  /** Kills whatever still runs in the lab's namespaces and deletes them. Safe to call more than once. */
  async destroy(): Promise<void> {
    for (const child of this.children) child.kill('SIGKILL');
    for (const ns of [...this.created].reverse()) {
      const pids = (await ip('netns', 'pids', ns).catch(() => '')).split('\n').filter(Boolean).map(Number);
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    // A namespace is freed once its last process has exited; deleting it drops its veth ends and bridge.
    const deadline = Date.now() + 10_000;
    for (const ns of [...this.created].reverse()) {
      while ((await ip('netns', 'pids', ns).catch(() => '')).trim() !== '' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      await ip('netns', 'del', ns).catch(() => undefined);
    }
    this.created.length = 0;
    liveLabs.delete(this);
  }

  /** Namespaces of this lab still present (for the test's own clean-up check). */
  async leftovers(): Promise<string[]> {
    const list = await ip('netns', 'list');
    return list
      .split('\n')
      .map((line) => line.split(' ')[0]!)
      .filter((name) => name.startsWith(`${this.tag}-`));
  }

  private async addNamespace(name: string): Promise<void> {
    await ip('netns', 'add', name);
    this.created.push(name);
    liveLabs.add(this);
  }

  /** The last resort when the test process exits without destroy(): synchronous, best effort. */
  destroySync(): void {
    for (const ns of [...this.created].reverse()) {
      try {
        const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
        for (const pid of pids) process.kill(pid, 'SIGKILL');
        execFileSync('ip', ['netns', 'del', ns]);
      } catch {
        // best effort
      }
    }
    this.created.length = 0;
  }
}

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { QueueRedis, RedisClient } from './redis-connection.ts';

export type { RedisClient } from './redis-connection.ts';

const scriptsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'scripts');

/**
 * One Lua script from src/queue/scripts, read once at start-up. The file name ends in the number
 * of keys the script takes (`reclaim-5.lua`), which run() checks so a caller cannot pass too few.
 */
export class LuaScript {
  readonly name: string;
  readonly source: string;
  readonly sha: string;
  readonly keyCount: number;

  constructor(file: string, dir = scriptsDir) {
    const match = /^(.+)-(\d+)\.lua$/.exec(file);
    if (!match) throw new Error(`Lua script file name must be <name>-<key count>.lua, got ${file}`);
    this.name = match[1]!;
    this.keyCount = Number(match[2]);
    this.source = fs.readFileSync(path.join(dir, file), 'utf8');
    this.sha = createHash('sha1').update(this.source).digest('hex');
  }

  /** EVALSHA, falling back to EVAL once when Redis does not know the script. A cluster client runs it on the primary of keys[0]'s slot. */
  async run(client: QueueRedis, keys: string[], args: string[]): Promise<unknown> {
    if (keys.length !== this.keyCount) throw new Error(`${this.name} takes ${this.keyCount} keys, got ${keys.length}`);
    try {
      return await client.evalSha(this.sha, { keys, arguments: args });
    } catch (error) {
      // After a Redis restart, SCRIPT FLUSH or a failover (a promoted replica's cache may lack it), EVAL sends the source and caches it again.
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return client.eval(this.source, { keys, arguments: args });
    }
  }

  /** Puts the script in Redis's cache (SCRIPT LOAD); fails early on a Redis too old for it. */
  async load(client: RedisClient): Promise<void> {
    const sha = await client.scriptLoad(this.source);
    if (sha !== this.sha) throw new Error(`Redis hashed ${this.name} as ${sha}, expected ${this.sha}`);
  }
}

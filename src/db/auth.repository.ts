import type { Sql } from './client.ts';

export const SCOPES = ['upload', 'read', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];
export type KeySource = 'environment' | 'bootstrap' | 'api' | 'cli';

export interface ApiKeyRecord {
  id: string;
  name: string;
  scopes: Scope[];
  source: KeySource;
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

/** A key row with its stored hash, for the constant-time comparison. */
export interface StoredApiKey extends ApiKeyRecord {
  keyHash: Buffer;
}

export interface NewApiKey {
  id: string;
  name: string;
  keyHash: Buffer;
  scopes: Scope[];
  source: KeySource;
}

export interface AuthRepository {
  createKey(key: NewApiKey): Promise<ApiKeyRecord>;
  /** The key with this hash, revoked or not (the caller decides, in constant time). */
  findKeyByHash(keyHash: Buffer): Promise<StoredApiKey | undefined>;
  /** Keys not revoked, oldest first. */
  listActiveKeys(): Promise<ApiKeyRecord[]>;
  /** False when there is no such unrevoked key. */
  revokeKey(id: string): Promise<boolean>;
  touchKey(id: string): Promise<void>;
  /**
   * The one key that API_KEY sets: created, or given this hash (and un-revoked, admin scope) when the
   * variable changed. Its id stays, so the videos it uploaded stay its own.
   */
  upsertEnvironmentKey(key: Omit<NewApiKey, 'source' | 'scopes'>): Promise<ApiKeyRecord>;
  /** Creates the key only if no unrevoked key exists (atomically across processes); undefined otherwise. */
  createKeyIfNoneActive(key: NewApiKey): Promise<ApiKeyRecord | undefined>;
  createSession(tokenHash: Buffer, keyId: string, ttlMs: number): Promise<Date>;
  /** The unexpired session with this token hash and its unrevoked key. */
  findSession(tokenHash: Buffer): Promise<{ tokenHash: Buffer; key: StoredApiKey } | undefined>;
  deleteSession(tokenHash: Buffer): Promise<void>;
  deleteExpiredSessions(): Promise<number>;
}

interface KeyRow {
  id: string;
  name: string;
  key_hash: Buffer;
  scopes: Scope[];
  source: KeySource;
  created_at: Date;
  last_used_at: Date | null;
  revoked_at: Date | null;
}

const keyColumns = 'id, name, key_hash, scopes, source, created_at, last_used_at, revoked_at';
// Any constant will do; every process that may create the first key uses the same one.
const FIRST_KEY_LOCK = 727_274_006;

function toKey(row: KeyRow): StoredApiKey {
  return {
    id: row.id,
    name: row.name,
    keyHash: row.key_hash,
    scopes: row.scopes,
    source: row.source,
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
    revokedAt: row.revoked_at,
  };
}

function withoutHash({ keyHash: _hash, ...record }: StoredApiKey): ApiKeyRecord {
  return record;
}

export class PgAuthRepository implements AuthRepository {
  constructor(private readonly sql: Sql) {}

  async createKey(key: NewApiKey): Promise<ApiKeyRecord> {
    const [row] = await this.sql<KeyRow[]>`
      INSERT INTO api_keys (id, name, key_hash, scopes, source) VALUES (${key.id}, ${key.name}, ${key.keyHash}, ${key.scopes}::text[], ${key.source})
      RETURNING ${this.sql.unsafe(keyColumns)}`;
    return withoutHash(toKey(row!));
  }

  async findKeyByHash(keyHash: Buffer): Promise<StoredApiKey | undefined> {
    const [row] = await this.sql<KeyRow[]>`SELECT ${this.sql.unsafe(keyColumns)} FROM api_keys WHERE key_hash = ${keyHash}`;
    return row ? toKey(row) : undefined;
  }

  async listActiveKeys(): Promise<ApiKeyRecord[]> {
    const rows = await this.sql<KeyRow[]>`SELECT ${this.sql.unsafe(keyColumns)} FROM api_keys WHERE revoked_at IS NULL ORDER BY created_at, id`;
    return rows.map((row) => withoutHash(toKey(row)));
  }

  async revokeKey(id: string): Promise<boolean> {
    const rows = await this.sql`UPDATE api_keys SET revoked_at = now() WHERE id = ${id} AND revoked_at IS NULL RETURNING id`;
    return rows.length === 1;
  }

  async touchKey(id: string): Promise<void> {
    await this.sql`UPDATE api_keys SET last_used_at = now() WHERE id = ${id}`;
  }

  async upsertEnvironmentKey(key: Omit<NewApiKey, 'source' | 'scopes'>): Promise<ApiKeyRecord> {
    const [row] = await this.sql<KeyRow[]>`
      INSERT INTO api_keys (id, name, key_hash, scopes, source) VALUES (${key.id}, ${key.name}, ${key.keyHash}, '{admin}', 'environment')
      ON CONFLICT (source) WHERE source = 'environment' DO UPDATE
        SET key_hash = excluded.key_hash, scopes = '{admin}', revoked_at = NULL
      RETURNING ${this.sql.unsafe(keyColumns)}`;
    return withoutHash(toKey(row!));
  }

  async createKeyIfNoneActive(key: NewApiKey): Promise<ApiKeyRecord | undefined> {
    return this.sql.begin(async (tx) => {
      // API processes starting together: one creates the key, the others then see it.
      await tx`SELECT pg_advisory_xact_lock(${FIRST_KEY_LOCK})`;
      const [active] = await tx`SELECT 1 FROM api_keys WHERE revoked_at IS NULL LIMIT 1`;
      if (active) return undefined;
      const [row] = await tx<KeyRow[]>`
        INSERT INTO api_keys (id, name, key_hash, scopes, source) VALUES (${key.id}, ${key.name}, ${key.keyHash}, ${key.scopes}::text[], ${key.source})
        RETURNING ${tx.unsafe(keyColumns)}`;
      return withoutHash(toKey(row!));
    });
  }

  async createSession(tokenHash: Buffer, keyId: string, ttlMs: number): Promise<Date> {
    const [row] = await this.sql<{ expires_at: Date }[]>`
      INSERT INTO sessions (token_hash, key_id, expires_at) VALUES (${tokenHash}, ${keyId}, now() + ${ttlMs} * interval '1 millisecond')
      RETURNING expires_at`;
    return row!.expires_at;
  }

  async findSession(tokenHash: Buffer): Promise<{ tokenHash: Buffer; key: StoredApiKey } | undefined> {
    const [row] = await this.sql<(KeyRow & { token_hash: Buffer })[]>`
      SELECT s.token_hash, ${this.sql.unsafe(keyColumns.split(', ').map((column) => `k.${column}`).join(', '))}
      FROM sessions s JOIN api_keys k ON k.id = s.key_id
      WHERE s.token_hash = ${tokenHash} AND s.expires_at > now() AND k.revoked_at IS NULL`;
    return row ? { tokenHash: row.token_hash, key: toKey(row) } : undefined;
  }

  async deleteSession(tokenHash: Buffer): Promise<void> {
    await this.sql`DELETE FROM sessions WHERE token_hash = ${tokenHash}`;
  }

  async deleteExpiredSessions(): Promise<number> {
    const rows = await this.sql`DELETE FROM sessions WHERE expires_at <= now() RETURNING 1`;
    return rows.length;
  }
}

import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { SCOPES, type ApiKeyRecord, type AuthRepository, type KeySource, type Scope, type StoredApiKey } from '../db/auth.repository.ts';
import { errors } from '../errors/app-error.ts';

/** Who is calling: the key behind a Bearer header or a session cookie. */
export interface Principal {
  keyId: string;
  name: string;
  /** As stored; see hasScope for what they allow. */
  scopes: Scope[];
}

export interface AuthSettings {
  sessionTtlMs: number;
  /** Minimum time between two last_used_at writes of one key (one write per request would be a write per request). */
  touchIntervalMs?: number;
}

export interface CreatedKey {
  record: ApiKeyRecord;
  /** The key itself: shown once, never stored. */
  key: string;
}

const KEY_PREFIX = 'vsk_';

/** `admin` implies the other scopes. */
export function hasScope(principal: Pick<Principal, 'scopes'>, scope: Scope): boolean {
  return principal.scopes.includes('admin') || principal.scopes.includes(scope);
}

export function isAdmin(principal: Pick<Principal, 'scopes'>): boolean {
  return principal.scopes.includes('admin');
}

/** sha256 of a key or session token: what PostgreSQL stores and looks up. */
export function secretHash(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

/** 32 random bytes, base64url: 43 characters. */
function randomSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** Checks a key's name and scopes from a request or the command line; returns them cleaned. */
export function parseKeySpec(name: unknown, scopes: unknown): { name: string; scopes: Scope[] } {
  if (typeof name !== 'string' || name.trim().length === 0 || name.length > 100 || /[\u0000-\u001f\u007f]/.test(name)) {
    throw errors.badRequest('invalid_name', 'name must be 1 to 100 characters without control characters');
  }
  if (!Array.isArray(scopes) || scopes.length === 0 || !scopes.every((scope) => (SCOPES as readonly unknown[]).includes(scope))) {
    throw errors.badRequest('invalid_scopes', `scopes must be a non-empty list of ${SCOPES.join(', ')}`);
  }
  return { name: name.trim(), scopes: SCOPES.filter((scope) => scopes.includes(scope)) };
}

/**
 * API keys and web sessions. Keys and session tokens are random; PostgreSQL holds only their sha256,
 * looked up by that hash and compared again with timingSafeEqual. Every refusal is the same
 * `unauthorized` (unknown, revoked or malformed key; unknown or expired session), so a caller learns
 * nothing of which part failed.
 */
export class AuthService {
  private readonly touched = new Map<string, number>();

  constructor(
    private readonly repository: AuthRepository,
    private readonly settings: AuthSettings,
  ) {}

  async createKey(name: string, scopes: Scope[], source: KeySource): Promise<CreatedKey> {
    const key = KEY_PREFIX + randomSecret();
    const record = await this.repository.createKey({ id: randomUUID(), name, keyHash: secretHash(key), scopes, source });
    return { record, key };
  }

  listKeys(): Promise<ApiKeyRecord[]> {
    return this.repository.listActiveKeys();
  }

  revokeKey(id: string): Promise<boolean> {
    return this.repository.revokeKey(id);
  }

  /** API_KEY: the admin key of this deployment, created or updated to this value. */
  ensureEnvironmentKey(key: string): Promise<ApiKeyRecord> {
    return this.repository.upsertEnvironmentKey({ id: randomUUID(), name: 'API_KEY (environment)', keyHash: secretHash(key) });
  }

  /** First start without API_KEY: an admin key when no usable key exists; undefined when one does. */
  async bootstrapAdminKey(): Promise<CreatedKey | undefined> {
    const key = KEY_PREFIX + randomSecret();
    const record = await this.repository.createKeyIfNoneActive({ id: randomUUID(), name: 'admin (first start)', keyHash: secretHash(key), scopes: ['admin'], source: 'bootstrap' });
    return record ? { record, key } : undefined;
  }

  async authenticateKey(key: string): Promise<Principal | undefined> {
    const hash = secretHash(key);
    return this.accept(await this.repository.findKeyByHash(hash), hash);
  }

  async authenticateSession(token: string): Promise<Principal | undefined> {
    const hash = secretHash(token);
    const session = await this.repository.findSession(hash);
    // The row was found by this hash; comparing again in constant time keeps the check independent of how the lookup matched.
    if (!session || !sameHash(session.tokenHash, hash)) return undefined;
    return this.accept(session.key, session.key.keyHash);
  }

  /** Signs in with a key: a new session token for the cookie, or undefined for a key that is not valid. */
  async startSession(key: string): Promise<{ token: string; principal: Principal; expiresAt: Date } | undefined> {
    const principal = await this.authenticateKey(key);
    if (!principal) return undefined;
    // Sign-ins are rare next to requests: a good moment to drop sessions that ran out.
    await this.repository.deleteExpiredSessions();
    const token = randomSecret();
    const expiresAt = await this.repository.createSession(secretHash(token), principal.keyId, this.settings.sessionTtlMs);
    return { token, principal, expiresAt };
  }

  endSession(token: string): Promise<void> {
    return this.repository.deleteSession(secretHash(token));
  }

  private accept(stored: StoredApiKey | undefined, hash: Buffer): Principal | undefined {
    // One comparison whether or not a row came back, so the time taken does not tell the two apart.
    const found = stored?.keyHash ?? Buffer.alloc(hash.length);
    const matches = sameHash(found, hash);
    if (!stored || !matches || stored.revokedAt !== null) return undefined;
    this.touch(stored.id);
    return { keyId: stored.id, name: stored.name, scopes: stored.scopes };
  }

  /** last_used_at, at most once per touchIntervalMs per key and process, off the request's path. */
  private touch(keyId: string): void {
    const now = Date.now();
    if (now - (this.touched.get(keyId) ?? 0) < (this.settings.touchIntervalMs ?? 60_000)) return;
    this.touched.set(keyId, now);
    this.repository.touchKey(keyId).catch(() => this.touched.delete(keyId));
  }
}

function sameHash(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

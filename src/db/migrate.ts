import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Sql } from './client.ts';

const migrationsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'migrations');
// Any constant will do; it only has to be the same in every process that migrates this database.
const MIGRATION_LOCK = 727_274_001;

export interface Migration {
  version: number;
  /** File name without .sql, e.g. 001_initial; recorded in schema_migrations. */
  name: string;
  sql: string;
}

/** Reads NNN_name.sql files from dir, ordered by version. */
export async function loadMigrations(dir = migrationsDir): Promise<Migration[]> {
  const files = (await fs.readdir(dir)).filter((file) => /^\d+_[\w-]+\.sql$/.test(file));
  const migrations = await Promise.all(
    files.map(async (file) => ({ version: Number.parseInt(file, 10), name: file.replace(/\.sql$/, ''), sql: await fs.readFile(path.join(dir, file), 'utf8') })),
  );
  migrations.sort((a, b) => a.version - b.version);
  const versions = new Set(migrations.map((m) => m.version));
  if (versions.size !== migrations.length) throw new Error(`two migrations in ${dir} share a version number`);
  return migrations;
}

/**
 * Applies the migrations not yet recorded in schema_migrations, in version order, each in its own
 * transaction together with its record. Every transaction first takes a transaction-scoped
 * advisory lock, so processes starting at once wait for each other and each migration runs
 * exactly once; the lock is released by COMMIT or ROLLBACK, never left behind by a crash.
 * Returns the names of the migrations applied by this call.
 */
export async function migrate(sql: Sql, migrations?: Migration[]): Promise<string[]> {
  const all = migrations ?? (await loadMigrations());
  // Creating the table under the lock too: two concurrent CREATE TABLE IF NOT EXISTS can still
  // collide on the catalog (duplicate type) when neither sees the other's uncommitted table.
  await sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`;
    await tx`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`;
  });
  const applied: string[] = [];
  for (const migration of all) {
    await sql.begin(async (tx) => {
      await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`;
      const [done] = await tx`SELECT 1 FROM schema_migrations WHERE version = ${migration.version}`;
      if (done) return;
      await tx.unsafe(migration.sql);
      await tx`INSERT INTO schema_migrations (version, name) VALUES (${migration.version}, ${migration.name})`;
      applied.push(migration.name);
    });
  }
  return applied;
}

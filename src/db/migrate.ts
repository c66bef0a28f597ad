import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Sql } from './client.ts';

const migrationsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'migrations');
// Any constant will do; it only has to be the same in every process that migrates this database.
const MIGRATION_LOCK = 727_274_001;

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export async function loadMigrations(dir = migrationsDir): Promise<Migration[]> {
  const files = (await fs.readdir(dir)).filter((file) => /^\d+_[\w-]+\.sql$/.test(file)).sort();
  const migrations = await Promise.all(
    files.map(async (file) => ({ version: Number(file.split('_')[0]), name: file.replace(/\.sql$/, ''), sql: await fs.readFile(path.join(dir, file), 'utf8') })),
  );
  const versions = new Set(migrations.map((m) => m.version));
  if (versions.size !== migrations.length) throw new Error(`two migrations in ${dir} share a version number`);
  return migrations;
}

/**
 * Applies the migrations not yet recorded, in order, each in its own transaction. An advisory lock
 * serialises processes that start at the same time, so each migration runs exactly once.
 * Returns the names of the migrations applied now.
 */
export async function migrate(sql: Sql, migrations?: Migration[]): Promise<string[]> {
  const pending = migrations ?? (await loadMigrations());
  await sql`CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`.catch((error: { code?: string }) => {
    // Two processes creating the table at once: one wins, the other sees a unique violation.
    if (error.code !== '23505' && error.code !== '42P07') throw error;
  });
  const applied: string[] = [];
  for (const migration of pending) {
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

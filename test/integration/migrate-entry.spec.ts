/** src/main/migrate.ts: the entry point the Helm chart's migration hook runs (`node dist/main/migrate.js`). */
import assert from 'node:assert/strict';
import path from 'node:path';
import { execa } from 'execa';
import { loadMigrations } from '../../src/db/migrate.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { freePort } from '../helpers/service.ts';

function runMigrate(env: Record<string, string>) {
  return execa(process.execPath, ['--import', 'tsx', path.join('src', 'main', 'migrate.ts')], {
    env: { NODE_ENV: 'production', LOG_FORMAT: 'json', ...env },
    extendEnv: false,
    reject: false,
    timeout: 60_000,
  });
}

describe('migrate entry point (the chart\'s pre-install/pre-upgrade hook)', function () {
  this.timeout(120_000);
  let db: TestDatabase;

  before(async () => {
    db = await createTestDatabase({ migrate: false });
  });
  after(() => db?.drop());

  it('applies every migration to an empty database, then none on a second run, and exits 0', async () => {
    const all = (await loadMigrations()).map((m) => m.name);
    const first = await runMigrate({ DATABASE_URL: db.url, PATH: process.env.PATH ?? '' });
    assert.equal(first.exitCode, 0, first.stderr);
    const applied = JSON.parse(first.stderr.split('\n').find((line) => line.includes('"migrations applied"'))!) as { applied: string[] };
    assert.deepEqual(applied.applied, all);
    const rows = await db.sql<{ name: string }[]>`SELECT name FROM schema_migrations ORDER BY version`;
    assert.deepEqual(rows.map((r) => r.name), all);
    const [videos] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM videos`;
    assert.equal(videos!.n, 0, 'the schema exists');

    const second = await runMigrate({ DATABASE_URL: db.url, PATH: process.env.PATH ?? '' });
    assert.equal(second.exitCode, 0, second.stderr);
    assert.match(second.stderr, /"applied":\[\]/);
  });

  it('exits 2 on a bad setting and 1 when PostgreSQL cannot be reached, saying why', async () => {
    const bad = await runMigrate({ DATABASE_URL: 'mysql://nope', PATH: process.env.PATH ?? '' });
    assert.equal(bad.exitCode, 2);
    assert.match(bad.stderr, /DATABASE_URL must use postgres: or postgresql:/);
    const port = await freePort();
    const down = await runMigrate({ DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/postgres`, PATH: process.env.PATH ?? '' });
    assert.equal(down.exitCode, 1);
    assert.match(down.stderr, /ECONNREFUSED.*"message":"migrations failed"/);
  });
});

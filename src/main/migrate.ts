// Applies the database migrations and exits: the Kubernetes chart's pre-install/pre-upgrade hook runs it once
// (`node dist/main/migrate.js` in the api image) before new pods start. Every other entry point also applies
// missing migrations at start-up; src/db/migrate.ts's advisory lock keeps concurrent runs safe.
import { ConfigError, loadConfig } from '../config.ts';
import { createSql } from '../db/client.ts';
import { migrate } from '../db/migrate.ts';
import { createLogger } from '../logger.ts';

async function run(): Promise<number> {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      return 2;
    }
    throw error;
  }
  const logger = createLogger(config, 'migrate');
  const sql = createSql(config.databaseUrl, { max: 1 });
  try {
    const applied = await migrate(sql);
    logger.info('migrations applied', { applied });
    return 0;
  } catch (error) {
    logger.error('migrations failed', { error: error instanceof Error ? error.message : String(error) });
    return 1;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

run().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error('migrate failed:', error instanceof Error ? error.message : error);
    process.exit(1);
  },
);

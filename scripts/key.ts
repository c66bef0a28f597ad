/**
 * API key management from the command line, through the same repository and rules as /admin/keys.
 *
 *   npm run key -- create --scope upload [--scope read] [--name ci-uploader]
 *   npm run key -- list
 *   npm run key -- revoke <id>
 *
 * Reads DATABASE_URL like the service (and migrates, so it also works before the first start).
 * `create` prints the key alone on stdout (shown once; e.g. KEY=$(npm run -s key -- create --scope read)).
 */
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../src/config.ts';
import { PgAuthRepository } from '../src/db/auth.repository.ts';
import { createSql } from '../src/db/client.ts';
import { migrate } from '../src/db/migrate.ts';
import { AppError } from '../src/errors/app-error.ts';
import { errorMessage } from '../src/errors/error-message.ts';
import { AuthService, parseKeySpec } from '../src/services/auth.service.ts';

const USAGE = `Usage: npm run key -- create --scope <upload|read|admin> [--scope ...] [--name <name>]
       npm run key -- list
       npm run key -- revoke <id>

create  makes a key with these scopes (admin implies the others; a comma list works too) and prints it
        on stdout, once: only its sha256 is stored
list    prints the keys that are not revoked (id, name, scopes, created, last used) as JSON lines
revoke  revokes a key by id; its sessions end with it
`;

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { scope: { type: 'string', multiple: true }, name: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  const [command, ...rest] = positionals;
  if (values.help || command === undefined) {
    process.stdout.write(USAGE);
    return values.help ? 0 : 2;
  }
  const config = loadConfig();
  const sql = createSql(config.databaseUrl, { max: 1 });
  try {
    await migrate(sql);
    const auth = new AuthService(new PgAuthRepository(sql), { sessionTtlMs: config.sessionTtlMs });
    switch (command) {
      case 'create': {
        const scopes = (values.scope ?? []).flatMap((scope) => scope.split(',')).map((scope) => scope.trim());
        const spec = parseKeySpec(values.name ?? `cli ${new Date().toISOString()}`, scopes);
        const { record, key } = await auth.createKey(spec.name, spec.scopes, 'cli');
        process.stderr.write(`created key ${record.id} "${record.name}" with scopes ${record.scopes.join(', ')}; it is shown only now:\n`);
        process.stdout.write(`${key}\n`);
        return 0;
      }
      case 'list':
        for (const key of await auth.listKeys()) process.stdout.write(`${JSON.stringify(key)}\n`);
        return 0;
      case 'revoke': {
        const [id] = rest;
        if (id === undefined || !/^[0-9a-f-]{36}$/i.test(id) || !(await auth.revokeKey(id))) {
          process.stderr.write(`no unrevoked key with id ${id ?? '(none given)'}\n`);
          return 1;
        }
        process.stderr.write(`revoked key ${id}\n`);
        return 0;
      }
      default:
        process.stderr.write(`unknown command "${command}"\n${USAGE}`);
        return 2;
    }
  } finally {
    await sql.end({ timeout: 5 });
  }
}

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof ConfigError || error instanceof AppError) process.stderr.write(`${error.message}\n`);
    else process.stderr.write(`key: ${errorMessage(error)}\n`);
    process.exit(error instanceof AppError || (error as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? 2 : 1);
  },
);

import postgres from 'postgres';

export type Sql = postgres.Sql;

export interface SqlOptions {
  /** Pool size; the API and a worker each need few connections. */
  max?: number;
}

/** PostgreSQL's type oid of int8 (bigint). */
const INT8 = 20;

/**
 * bigint columns (size_bytes, count(*), identity ids) come back as numbers while they are exactly
 * representable, which for this service's values is always; beyond 2^53 the text is kept rather
 * than silently rounded.
 */
const bigintAsNumber = {
  to: INT8,
  from: [INT8],
  serialize: (value: number | bigint | string) => String(value),
  parse: (raw: string): number | string => {
    const value = Number(raw);
    return Number.isSafeInteger(value) ? value : raw;
  },
};

export function createSql(databaseUrl: string, options: SqlOptions = {}): Sql {
  return postgres(databaseUrl, {
    max: options.max ?? 10,
    onnotice: () => {}, // "relation already exists, skipping" and the like are not news
    connect_timeout: 10,
    idle_timeout: 60,
    types: { bigint: bigintAsNumber },
  });
}

import postgres from 'postgres';

export type Sql = postgres.Sql;

export interface SqlOptions {
  /** Pool size; the API and a worker each need few connections. */
  max?: number;
}

export function createSql(databaseUrl: string, options: SqlOptions = {}): Sql {
  return postgres(databaseUrl, {
    max: options.max ?? 10,
    onnotice: () => {}, // "relation already exists, skipping" and the like are not news
    connect_timeout: 10,
    idle_timeout: 60,
  });
}

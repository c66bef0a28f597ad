import type postgres from 'postgres';

export interface BackendInfo {
  pid: number;
  state: string | null;
  query: string;
  applicationName: string;
}

/** The backends connected to `databaseName`, except the one asking. */
export async function listBackends(adminSql: postgres.Sql, databaseName: string): Promise<BackendInfo[]> {
  const rows = await adminSql<{ pid: number; state: string | null; query: string; application_name: string }[]>`
    SELECT pid, state, query, application_name
    FROM pg_stat_activity
    WHERE datname = ${databaseName} AND pid <> pg_backend_pid() AND backend_type = 'client backend'`;
  return rows.map((row) => ({ pid: row.pid, state: row.state, query: row.query, applicationName: row.application_name }));
}

/**
 * Terminates every client backend connected to `databaseName` (except the admin connection itself)
 * with pg_terminate_backend, as an administrator or a PostgreSQL restart would: clients get
 * FATAL 57P01 (admin_shutdown) on a running query, or find the connection closed on the next one.
 * Waits (up to timeoutMs per backend) until each backend has actually exited, so a caller can
 * assert on what happens next without racing. Returns the pids terminated.
 *
 * adminSql must connect to a different database (e.g. postgres) or at least be a different
 * connection; a superuser (or pg_signal_backend member) is needed for other users' backends.
 */
export async function terminateConnections(adminSql: postgres.Sql, databaseName: string, timeoutMs = 5_000): Promise<number[]> {
  const rows = await adminSql<{ pid: number; terminated: boolean }[]>`
    SELECT pid, pg_terminate_backend(pid, ${timeoutMs}::bigint) AS terminated
    FROM pg_stat_activity
    WHERE datname = ${databaseName} AND pid <> pg_backend_pid() AND backend_type = 'client backend'`;
  const stuck = rows.filter((row) => !row.terminated).map((row) => row.pid);
  if (stuck.length > 0) throw new Error(`backends ${stuck.join(', ')} of ${databaseName} did not exit within ${timeoutMs} ms`);
  return rows.map((row) => row.pid);
}

// Connection-level failures of Redis or PostgreSQL: the same job will succeed once the service is back.
const transientCodes = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
  // PostgreSQL SQLSTATEs: admin shutdown, crash shutdown, cannot connect now, too many connections, serialization/deadlock.
  '57P01',
  '57P02',
  '57P03',
  '53300',
  '40001',
  '40P01',
]);

const redisConnectionErrors = new Set(['ClientClosedError', 'ClientOfflineError', 'SocketClosedUnexpectedlyError', 'ConnectionTimeoutError']);

export function isTransientError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && (transientCodes.has(code) || code.startsWith('08'))) return true;
  // node-redis reports a lost socket with these classes; v5 leaves `name` as 'Error', so look at the class.
  return redisConnectionErrors.has(error.constructor.name) || redisConnectionErrors.has(error.name);
}

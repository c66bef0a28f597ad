/**
 * Errors the API renders: a stable machine code, an HTTP status and a message for people.
 * Routes and services throw these through the factories below; one error handler renders them.
 */
export class AppError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** Sent as Retry-After (seconds): when asking again may succeed. */
    readonly retryAfterS?: number,
  ) {
    super(message);
    this.name = 'AppError';
  }
}

export const errors = {
  badRequest: (code: string, message: string) => new AppError(400, code, message),
  /** No key, or one that is unknown, revoked or expired: one answer for all, so a caller learns nothing of which. */
  unauthorized: () => new AppError(401, 'unauthorized', 'send a valid API key (Authorization: Bearer <key>) or sign in'),
  forbidden: (scope: string) => new AppError(403, 'forbidden', `this key lacks the "${scope}" scope`),
  notFound: (what: string) => new AppError(404, 'not_found', `${what} not found`),
  /** The request contradicts the resource's state (cancelling a finished video). */
  conflict: (code: string, message: string) => new AppError(409, code, message),
  requestTimeout: (message: string, retryAfterS: number) => new AppError(408, 'request_timeout', message, retryAfterS),
  payloadTooLarge: (limitBytes: number) =>
    new AppError(413, 'file_too_large', `the upload exceeds the limit of ${limitBytes} bytes`),
  unsupportedMedia: (code: string, message: string) => new AppError(415, code, message),
  unprocessable: (code: string, message: string) => new AppError(422, code, message),
  tooManyRequests: (code: string, message: string, retryAfterS: number) => new AppError(429, code, message, retryAfterS),
  unavailable: (message: string, code = 'service_unavailable', retryAfterS?: number) => new AppError(503, code, message, retryAfterS),
  insufficientStorage: (message = 'the server has no storage space left for this upload; try again later') =>
    new AppError(507, 'insufficient_storage', message, 60),
};

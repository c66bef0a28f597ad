/**
 * Errors the API renders: a stable machine code, an HTTP status and a message for people.
 * Routes and services throw these through the factories below; one error handler renders them.
 */
export class AppError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'AppError';
  }
}

export const errors = {
  badRequest: (code: string, message: string) => new AppError(400, code, message),
  notFound: (what: string) => new AppError(404, 'not_found', `${what} not found`),
  payloadTooLarge: (limitBytes: number) =>
    new AppError(413, 'file_too_large', `the upload exceeds the limit of ${limitBytes} bytes`),
  unsupportedMedia: (code: string, message: string) => new AppError(415, code, message),
  unprocessable: (code: string, message: string) => new AppError(422, code, message),
  unavailable: (message: string) => new AppError(503, 'service_unavailable', message),
};

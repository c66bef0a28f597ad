import type { ErrorRequestHandler, RequestHandler } from 'express';
import multer from 'multer';
import { AppError, errors } from '../errors/app-error.ts';
import type { Logger } from '../logger.ts';
import { StorageKeyError } from '../storage/video-storage.ts';
import { isStorageFull } from '../errors/storage-full.ts';
import { isTransientError } from '../errors/transient-error.ts';
import { VIDEO_FIELD } from './upload.ts';

/** Maps anything thrown in a route to one JSON shape: {"error":{"code","message"}}. */
export function toAppError(error: unknown, maxUploadBytes: number): AppError | undefined {
  if (error instanceof AppError) return error;
  if (error instanceof multer.MulterError) {
    switch (error.code) {
      case 'LIMIT_FILE_SIZE':
        return errors.payloadTooLarge(maxUploadBytes);
      case 'LIMIT_UNEXPECTED_FILE':
        return errors.badRequest('unexpected_field', `send exactly one file, in the form field "${VIDEO_FIELD}" (got "${error.field ?? ''}")`);
      default:
        return errors.badRequest('invalid_multipart', `the multipart body was refused: ${error.message}`);
    }
  }
  if (error instanceof StorageKeyError) return errors.badRequest('invalid_key', error.message);
  // Anywhere in an upload (staging, a temporary copy for ffprobe): the message would name server paths.
  if (isStorageFull(error)) return errors.insufficientStorage();
  const status = (error as { status?: unknown }).status;
  // body-parser and busboy errors carry a 4xx status ("Unexpected end of form", malformed JSON).
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new AppError(status, 'invalid_request', (error as Error).message);
  }
  if (error instanceof Error && /Unexpected end of form|Malformed part header|Multipart: Boundary not found/.test(error.message)) {
    return errors.badRequest('invalid_multipart', error.message);
  }
  if (isTransientError(error)) return errors.unavailable('a backing service (PostgreSQL or Redis) is unavailable; try again shortly');
  return undefined;
}

export function errorHandler(logger: Logger, maxUploadBytes: number): ErrorRequestHandler {
  return (error: unknown, req, res, _next) => {
    const appError = toAppError(error, maxUploadBytes);
    // An answer already went out (an upload cut short by a timeout was answered 408 when it was cut);
    // this is the failure of the rest of that request.
    if (res.headersSent) return;
    if (appError) {
      if (appError.status >= 500) logger.warn('request failed', { method: req.method, path: req.path, code: appError.code, error: String(error) });
      if (appError.retryAfterS !== undefined) res.set('Retry-After', String(appError.retryAfterS));
      res.status(appError.status).json({ error: { code: appError.code, message: appError.message } });
      return;
    }
    logger.error('unhandled request error', { method: req.method, path: req.path, error });
    res.status(500).json({ error: { code: 'internal_error', message: 'internal server error' } });
  };
}

export const notFoundHandler: RequestHandler = (req, _res, next) => {
  next(errors.notFound(`route ${req.method} ${req.path}`));
};

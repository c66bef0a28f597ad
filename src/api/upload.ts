import type { Request, RequestHandler } from 'express';
import multer from 'multer';
import { errors } from '../errors/app-error.ts';
import type { StagedUpload, UploadService } from '../services/upload.service.ts';
import { uploadContext } from './upload-admission.ts';

export const VIDEO_FIELD = 'video';

/**
 * Multer glue only: streams the `video` part into storage through the upload service.
 * Upload rules (names, fps, probing) live in UploadService.
 */
class StagingEngine implements multer.StorageEngine {
  constructor(private readonly uploads: UploadService) {}

  _handleFile(req: Request, file: Express.Multer.File, callback: (error?: unknown, info?: Partial<Express.Multer.File>) => void): void {
    // A deadline of the upload guard cuts the file stream, which fails the staging and deletes what it wrote.
    const context = uploadContext(req);
    const cut = () => file.stream.destroy(context!.signal.reason as Error);
    if (context?.signal.aborted) cut();
    else context?.signal.addEventListener('abort', cut, { once: true });
    const staging = this.uploads
      .stageUpload(file.originalname, file.stream)
      .finally(() => context?.signal.removeEventListener('abort', cut));
    if (context) context.staging = staging;
    staging
      .then((staged) => callback(null, { staged, size: staged.sizeBytes } as Partial<Express.Multer.File>))
      .catch((error: unknown) => {
        file.stream.resume(); // drain what is left so the request can finish and get its answer
        callback(error);
      });
  }

  // Called by multer when a later part of the same request fails (e.g. the size limit).
  _removeFile(_req: Request, file: Express.Multer.File, callback: (error: Error | null) => void): void {
    const staged = stagedOf(file);
    if (!staged) return callback(null);
    this.uploads.discardStaged(staged.videoId).then(() => callback(null), callback);
  }
}

function stagedOf(file: Express.Multer.File | undefined): StagedUpload | undefined {
  return (file as (Express.Multer.File & { staged?: StagedUpload }) | undefined)?.staged;
}

export function stagedUpload(req: Request): StagedUpload | undefined {
  return stagedOf(req.file);
}

export function uploadMiddleware(uploads: UploadService, maxUploadBytes: number): RequestHandler[] {
  const upload = multer({
    storage: new StagingEngine(uploads),
    // Keep the client's name as sent, so a crafted path is refused rather than silently trimmed.
    preservePath: true,
    // Browsers send file names as raw UTF-8; busboy's default (latin1) would store "vidÃ©o.mp4".
    defParamCharset: 'utf8',
    limits: { fileSize: maxUploadBytes, files: 1, fields: 10, fieldSize: 1024, parts: 12 },
  }).single(VIDEO_FIELD);

  // Refuse a declared over-size body before reading it. Multipart framing adds a little, hence the slack.
  const checkDeclaredLength: RequestHandler = (req, _res, next) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxUploadBytes + 64 * 1024) {
      next(errors.payloadTooLarge(maxUploadBytes));
      return;
    }
    next();
  };
  // Multer passes on a file stream's error (a full disk, a cut connection) as soon as the stream fails,
  // while the staging is still deleting what it wrote: the answer waits for that clean-up, so a client
  // told 507 or 408 finds nothing of its upload left behind.
  const uploadThenSettle: RequestHandler = (req, res, next) => {
    upload(req, res, (error?: unknown) => {
      const staging = error === undefined ? undefined : uploadContext(req)?.staging;
      if (staging === undefined) return next(error);
      staging.then(
        () => next(error),
        () => next(error),
      );
    });
  };
  return [checkDeclaredLength, uploadThenSettle];
}

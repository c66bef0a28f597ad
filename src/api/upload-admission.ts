import type { Request, RequestHandler, Response } from 'express';
import { AppError, errors } from '../errors/app-error.ts';
import type { StorageSpace } from '../storage/video-storage.ts';

export interface UploadAdmissionSettings {
  /** Uploads in progress at once in this process (503 beyond). */
  maxConcurrentUploads: number;
  /** Uploads in progress at once from one client address (429 beyond). */
  maxUploadsPerClient: number;
  /** The whole body must arrive within this (408). */
  requestTimeoutMs: number;
  /** The body may pause this long at most (408). */
  idleTimeoutMs: number;
  /** Storage with less free space refuses uploads (507); 0: no check. */
  minFreeBytes: number;
}

/** Retry-After of a refusal because others are uploading: about when a slot may be free. */
const BUSY_RETRY_AFTER_S = 5;

/**
 * Counts uploads in progress, in all and per client address. Pure bookkeeping: take() either
 * counts the upload in or says which cap it met; release() undoes a take.
 */
export class UploadSlots {
  private total = 0;
  private readonly perClient = new Map<string, number>();

  constructor(
    private readonly maxTotal: number,
    private readonly maxPerClient: number,
  ) {}

  take(client: string): 'taken' | 'client_busy' | 'server_busy' {
    const mine = this.perClient.get(client) ?? 0;
    // The client's own cap first: one client filling the server is told it is the one to wait.
    if (mine >= this.maxPerClient) return 'client_busy';
    if (this.total >= this.maxTotal) return 'server_busy';
    this.total += 1;
    this.perClient.set(client, mine + 1);
    return 'taken';
  }

  release(client: string): void {
    const mine = this.perClient.get(client) ?? 0;
    if (mine === 0) return;
    this.total -= 1;
    if (mine === 1) this.perClient.delete(client);
    else this.perClient.set(client, mine - 1);
  }

  get inProgress(): number {
    return this.total;
  }
}

/**
 * What the upload guard shares with the multer storage engine for one request: the signal that cuts
 * the upload short (a deadline passed), and the staging write in progress, so the answer waits until
 * what was staged is deleted.
 */
export interface UploadContext {
  signal: AbortSignal;
  staging: Promise<unknown> | undefined;
}

const contexts = new WeakMap<Request, UploadContext>();

export function uploadContext(req: Request): UploadContext | undefined {
  return contexts.get(req);
}

/**
 * Admission and deadlines of uploads, before multer reads the body: a slot (global and per client
 * address; 503 or 429 with Retry-After when none is free), room in storage (507), then deadlines for
 * the body: all of it within requestTimeoutMs, and no pause longer than idleTimeoutMs (408). A client
 * that stops sending, or trickles a byte at a time, is answered and cut off, and what it staged is
 * deleted. The slot is held until the answer is sent, the checks of the upload included.
 *
 * Client address: the TCP peer. Behind a reverse proxy every client has the proxy's address, so the
 * per-client cap then applies to the proxy as a whole.
 */
export function uploadAdmission(settings: UploadAdmissionSettings, space: Pick<StorageSpace, 'freeBytes'>): RequestHandler {
  const slots = new UploadSlots(settings.maxConcurrentUploads, settings.maxUploadsPerClient);
  return async (req, res, next) => {
    const client = req.socket.remoteAddress ?? 'unknown';
    const taken = slots.take(client);
    if (taken !== 'taken') {
      res.set('Connection', 'close'); // do not keep reading a body we refused
      next(
        taken === 'client_busy'
          ? errors.tooManyRequests('too_many_uploads', `at most ${settings.maxUploadsPerClient} uploads at once from one client; wait for one to finish`, BUSY_RETRY_AFTER_S)
          : errors.unavailable(`the server is taking ${settings.maxConcurrentUploads} uploads already; try again shortly`, 'server_busy', BUSY_RETRY_AFTER_S),
      );
      return;
    }
    let released = false;
    res.once('close', () => {
      if (released) return;
      released = true;
      slots.release(client);
    });
    try {
      if (settings.minFreeBytes > 0) {
        const free = await space.freeBytes();
        if (free !== undefined && free < settings.minFreeBytes) throw errors.insufficientStorage();
      }
    } catch (error) {
      res.set('Connection', 'close');
      next(error);
      return;
    }
    const controller = new AbortController();
    const context: UploadContext = { signal: controller.signal, staging: undefined };
    contexts.set(req, context);
    watchDeadlines(req, res, settings, (error) => {
      controller.abort(error);
      void answerWhenUnstaged(res, context, error);
    });
    next();
  };
}

/** Starts the body's deadlines; `expired` is called at most once, never after the body arrived or an answer went out. */
function watchDeadlines(req: Request, res: Response, settings: UploadAdmissionSettings, expired: (error: AppError) => void): void {
  let lastBytes = req.socket.bytesRead;
  let lastProgress = performance.now();
  const stop = () => {
    clearTimeout(whole);
    clearInterval(idle);
  };
  const expire = (error: AppError) => {
    stop();
    if (!res.headersSent) expired(error);
  };
  const whole = setTimeout(
    () => expire(errors.requestTimeout(`the upload did not arrive within ${settings.requestTimeoutMs} ms (REQUEST_TIMEOUT_MS)`, 1)),
    settings.requestTimeoutMs,
  );
  // bytesRead, polled: listening to the body's 'data' would switch it to flowing before multer reads it.
  const idle = setInterval(
    () => {
      const bytes = req.socket.bytesRead;
      if (bytes !== lastBytes) {
        lastBytes = bytes;
        lastProgress = performance.now();
      } else if (performance.now() - lastProgress >= settings.idleTimeoutMs) {
        expire(errors.requestTimeout(`the upload sent nothing for ${settings.idleTimeoutMs} ms (IDLE_TIMEOUT_MS)`, 1));
      }
    },
    Math.max(20, Math.min(1_000, Math.floor(settings.idleTimeoutMs / 4))),
  );
  whole.unref();
  idle.unref();
  // The body is in (the checks that follow are ours to take time over), or the exchange is over.
  req.once('end', stop);
  res.once('close', stop);
}

/** Answers a cut-off upload once its staged bytes are gone; the connection closes after the answer. */
async function answerWhenUnstaged(res: Response, context: UploadContext, error: AppError): Promise<void> {
  await context.staging?.catch(() => undefined);
  if (res.headersSent) return;
  res.set('Connection', 'close');
  if (error.retryAfterS !== undefined) res.set('Retry-After', String(error.retryAfterS));
  res.status(error.status).json({ error: { code: error.code, message: error.message } });
}

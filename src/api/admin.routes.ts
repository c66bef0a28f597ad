import { timingSafeEqual } from 'node:crypto';
import { Router, type RequestHandler } from 'express';
import { AppError, errors } from '../errors/app-error.ts';
import type { ReliableQueue } from '../queue/reliable-queue.ts';

export type DeadLetterQueue = Pick<ReliableQueue, 'listDeadLetters' | 'retryDeadLetter' | 'discardDeadLetter'>;

/**
 * Operator endpoints for dead letters. They are off unless ADMIN_TOKEN is set, and then need
 * `Authorization: Bearer <token>`.
 */
export function adminRoutes(queue: DeadLetterQueue, adminToken: string | undefined): Router {
  const router = Router();
  router.use('/admin', requireToken(adminToken));

  router.get('/admin/dead-letters', async (req, res) => {
    const offset = boundedInteger(req.query.offset, 'offset', 0, 0, 1_000_000);
    const limit = boundedInteger(req.query.limit, 'limit', 100, 1, 1000);
    res.json(await queue.listDeadLetters(offset, limit));
  });

  router.post('/admin/dead-letters/:jobId/retry', async (req, res) => {
    if (!(await queue.retryDeadLetter(req.params.jobId))) throw errors.notFound(`dead letter ${req.params.jobId}`);
    res.status(202).json({ jobId: req.params.jobId, status: 'requeued' });
  });

  router.delete('/admin/dead-letters/:jobId', async (req, res) => {
    if (!(await queue.discardDeadLetter(req.params.jobId))) throw errors.notFound(`dead letter ${req.params.jobId}`);
    res.status(204).end();
  });
  return router;
}

function requireToken(adminToken: string | undefined): RequestHandler {
  return (req, _res, next) => {
    if (!adminToken) return next(new AppError(403, 'admin_disabled', 'the admin API is off; set ADMIN_TOKEN to enable it'));
    const given = Buffer.from(/^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '');
    const expected = Buffer.from(adminToken);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      return next(new AppError(401, 'unauthorized', 'send Authorization: Bearer <ADMIN_TOKEN>'));
    }
    next();
  };
}

function boundedInteger(raw: unknown, name: string, fallback: number, min: number, max: number): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (typeof raw !== 'string' || !/^\d+$/.test(raw) || value < min || value > max) throw errors.badRequest('invalid_query', `${name} must be a whole number in [${min}, ${max}]`);
  return value;
}

import { Router } from 'express';
import { errors } from '../errors/app-error.ts';
import type { ReliableQueue } from '../queue/reliable-queue.ts';
import { requireScope } from './auth.ts';

export type DeadLetterQueue = Pick<ReliableQueue, 'listDeadLetters' | 'retryDeadLetter' | 'discardDeadLetter'>;

/** Operator endpoints for dead letters (scope admin). */
export function adminRoutes(queue: DeadLetterQueue): Router {
  const router = Router();
  router.get('/admin/dead-letters', requireScope('admin'), async (req, res) => {
    const offset = boundedInteger(req.query.offset, 'offset', 0, 0, 1_000_000);
    const limit = boundedInteger(req.query.limit, 'limit', 100, 1, 1000);
    res.json(await queue.listDeadLetters(offset, limit));
  });

  router.post('/admin/dead-letters/:jobId/retry', requireScope<{ jobId: string }>('admin'), async (req, res) => {
    if (!(await queue.retryDeadLetter(req.params.jobId))) throw errors.notFound(`dead letter ${req.params.jobId}`);
    res.status(202).json({ jobId: req.params.jobId, status: 'requeued' });
  });

  router.delete('/admin/dead-letters/:jobId', requireScope<{ jobId: string }>('admin'), async (req, res) => {
    if (!(await queue.discardDeadLetter(req.params.jobId))) throw errors.notFound(`dead letter ${req.params.jobId}`);
    res.status(204).end();
  });
  return router;
}

function boundedInteger(raw: unknown, name: string, fallback: number, min: number, max: number): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (typeof raw !== 'string' || !/^\d+$/.test(raw) || value < min || value > max) throw errors.badRequest('invalid_query', `${name} must be a whole number in [${min}, ${max}]`);
  return value;
}

import { Router, type RequestHandler } from 'express';
import type { ServiceMetrics } from '../metrics/service-metrics.ts';
import { requireScope } from './auth.ts';

/** Prometheus text format of this process's registry. */
export function metricsHandler(metrics: Pick<ServiceMetrics, 'metricsText' | 'contentType'>): RequestHandler {
  return async (_req, res) => {
    const text = await metrics.metricsText();
    res.type(metrics.contentType).send(text);
  };
}

/** GET /metrics on the API port: scope admin (a worker serves it unguarded on its own health port). */
export function metricsRoutes(metrics: Pick<ServiceMetrics, 'metricsText' | 'contentType'>): Router {
  const router = Router();
  router.get('/metrics', requireScope('admin'), metricsHandler(metrics));
  return router;
}

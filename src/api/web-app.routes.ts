import { existsSync } from 'node:fs';
import path from 'node:path';
import express, { Router } from 'express';
import { AppError, errors } from '../errors/app-error.ts';
import type { Logger } from '../logger.ts';

/**
 * What the page may load: only this origin's scripts, styles, media and API (no CDN, no inline script),
 * images also as data: URLs; it may not be framed.
 */
const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "img-src 'self' data:",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * The web app built from web/ (npm run build:web) into webDir: index.html at / and content-hashed files
 * under /assets/, cached for a year (a new build has new names). Mounted before authentication: these
 * files hold no data, and the page signs in itself. The app's routes live in the URL's fragment
 * (/#/videos/<id>), so nothing else is served here and no API route is shadowed.
 */
export function webAppRoutes(webDir: string, logger: Logger): Router {
  const router = Router();
  const index = path.join(webDir, 'index.html');
  if (!existsSync(index)) {
    logger.warn('the web app is not built, so / serves nothing; run npm run build:web', { webDir });
  }
  router.get('/', (_req, res, next) => {
    res.setHeader('Cache-Control', 'no-cache');
    res.setHeader('Content-Security-Policy', CONTENT_SECURITY_POLICY);
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.sendFile(index, (error) => {
      if (error && !res.headersSent) next(new AppError(404, 'not_found', 'the web app is not built: run npm run build:web'));
    });
  });
  router.use(
    '/assets',
    express.static(path.join(webDir, 'assets'), { immutable: true, maxAge: '365d', index: false, redirect: false }),
    (req, _res, next) => next(errors.notFound(`asset ${req.path}`)),
  );
  return router;
}

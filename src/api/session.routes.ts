import express, { Router, type CookieOptions, type Request } from 'express';
import type { AuthService } from '../services/auth.service.ts';
import { errors } from '../errors/app-error.ts';
import { principalOf, SESSION_COOKIE, sessionToken } from './auth.ts';

export interface SessionSettings {
  sessionTtlMs: number;
  /** auto: Secure when the request came over https. */
  cookieSecure: 'auto' | 'true' | 'false';
}

/** Sign-in for the web app: a key in, an HttpOnly, SameSite=Strict session cookie out; sign-out revokes it. */
export function sessionRoutes(auth: AuthService, settings: SessionSettings): Router {
  const router = Router();
  const cookie = (req: Request): CookieOptions => ({
    httpOnly: true,
    sameSite: 'strict',
    path: '/',
    secure: settings.cookieSecure === 'true' || (settings.cookieSecure === 'auto' && req.secure),
  });

  router.post('/auth/session', express.json({ limit: '4kb' }), async (req, res) => {
    const key = (req.body as { key?: unknown } | undefined)?.key;
    if (typeof key !== 'string' || key.length === 0) throw errors.badRequest('invalid_body', 'send JSON {"key": "<API key>"}');
    const session = key.length <= 512 ? await auth.startSession(key) : undefined;
    if (!session) throw errors.unauthorized();
    res.cookie(SESSION_COOKIE, session.token, { ...cookie(req), maxAge: settings.sessionTtlMs });
    res.status(204).end();
  });

  router.delete('/auth/session', async (req, res) => {
    const token = sessionToken(req);
    if (token !== undefined && token.length <= 100) await auth.endSession(token);
    res.clearCookie(SESSION_COOKIE, cookie(req));
    res.status(204).end();
  });

  router.get('/auth/me', (_req, res) => {
    const { keyId, name, scopes } = principalOf(res);
    res.json({ keyId, name, scopes });
  });
  return router;
}

import type { Request, RequestHandler, Response } from 'express';
import type { Scope } from '../db/auth.repository.ts';
import { errors } from '../errors/app-error.ts';
import { hasScope, type AuthService, type Principal } from '../services/auth.service.ts';

export const SESSION_COOKIE = 'vidsense_session';

/**
 * What answers without a key: health, the OpenAPI document, signing in and out, and the web app's
 * static files (`/`, `/index.html`, `/favicon.ico`, `/assets/*`). Everything else, unknown paths included,
 * needs a key: a route added later is guarded unless it is listed here.
 */
export function isPublicRequest(req: Pick<Request, 'method' | 'path'>): boolean {
  const { method, path } = req;
  if (path === '/auth/session') return method === 'POST' || method === 'DELETE';
  if (method !== 'GET' && method !== 'HEAD') return false;
  return ['/healthz', '/readyz', '/openapi.json', '/', '/index.html', '/favicon.ico'].includes(path) || path.startsWith('/assets/');
}

/** The session token of the request's cookie, if it sent one. */
export function sessionToken(req: Pick<Request, 'headers'>): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const separator = part.indexOf('=');
    if (separator > 0 && part.slice(0, separator).trim() === SESSION_COOKIE) return part.slice(separator + 1).trim() || undefined;
  }
  return undefined;
}

/**
 * Authenticates every request that is not public: `Authorization: Bearer <key>`, else the session
 * cookie. A request that sends an Authorization header is judged by it alone. Sets the principal
 * for principalOf; anything missing or invalid is 401 before any route runs.
 */
export function authenticate(auth: AuthService): RequestHandler {
  return (req, res, next) => {
    if (isPublicRequest(req)) return next();
    identify(auth, req)
      .then((principal) => {
        if (!principal) {
          res.set('WWW-Authenticate', 'Bearer realm="vidsense"'); // RFC 6750
          return next(errors.unauthorized());
        }
        res.locals.principal = principal;
        next();
      })
      .catch(next);
  };
}

async function identify(auth: AuthService, req: Request): Promise<Principal | undefined> {
  const header = req.headers.authorization;
  if (header !== undefined) {
    const key = /^bearer ([\x21-\x7e]{1,512})$/i.exec(header)?.[1]; // the scheme name is case-insensitive (RFC 7235)
    return key === undefined ? undefined : auth.authenticateKey(key);
  }
  const token = sessionToken(req);
  return token === undefined || token.length > 100 ? undefined : auth.authenticateSession(token);
}

/** Generic in the route's parameters, so a route that lists it first keeps its typed req.params. */
export function requireScope<Params = Record<string, string>>(scope: Scope): RequestHandler<Params> {
  return (_req, res, next) => {
    if (hasScope(principalOf(res), scope)) return next();
    res.set('WWW-Authenticate', `Bearer realm="vidsense", error="insufficient_scope", scope="${scope}"`);
    next(errors.forbidden(scope));
  };
}

export function principalOf(res: Response): Principal {
  const principal = res.locals.principal as Principal | undefined;
  // Only reachable if a route was registered as public by mistake; refuse rather than serve it anonymously.
  if (!principal) throw errors.unauthorized();
  return principal;
}

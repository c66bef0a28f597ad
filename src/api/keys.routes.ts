import express, { Router } from 'express';
import type { ApiKeyRecord } from '../db/auth.repository.ts';
import { errors } from '../errors/app-error.ts';
import { parseKeySpec, type AuthService } from '../services/auth.service.ts';
import { requireScope } from './auth.ts';
import { UUID } from './params.ts';

/** Key management (scope admin). A new key is shown once, in the 201 answer. */
export function keyRoutes(auth: AuthService): Router {
  const router = Router();

  router.post('/admin/keys', requireScope('admin'), express.json({ limit: '4kb' }), async (req, res) => {
    const body = (req.body ?? {}) as { name?: unknown; scopes?: unknown };
    const { name, scopes } = parseKeySpec(body.name, body.scopes);
    const { record, key } = await auth.createKey(name, scopes, 'api');
    res.status(201).json({ id: record.id, name: record.name, scopes: record.scopes, key, createdAt: record.createdAt });
  });

  router.get('/admin/keys', requireScope('admin'), async (_req, res) => {
    res.json({ items: (await auth.listKeys()).map(presentKey) });
  });

  router.delete('/admin/keys/:id', requireScope<{ id: string }>('admin'), async (req, res) => {
    if (!UUID.test(req.params.id) || !(await auth.revokeKey(req.params.id))) throw errors.notFound(`key ${req.params.id}`);
    res.status(204).end();
  });
  return router;
}

function presentKey(key: ApiKeyRecord) {
  return { id: key.id, name: key.name, scopes: key.scopes, createdAt: key.createdAt, lastUsedAt: key.lastUsedAt };
}

import assert from 'node:assert/strict';
import { parseRoute, routeHash } from '../../../web/src/lib/route.ts';

describe('web app routes (the URL fragment)', () => {
  it('reads every page, the videos list by default', () => {
    assert.deepEqual(parseRoute(''), { page: 'videos' });
    assert.deepEqual(parseRoute('#'), { page: 'videos' });
    assert.deepEqual(parseRoute('#/'), { page: 'videos' });
    assert.deepEqual(parseRoute('#/videos'), { page: 'videos' });
    assert.deepEqual(parseRoute('#/videos/'), { page: 'videos' });
    assert.deepEqual(parseRoute('#/upload'), { page: 'upload' });
    assert.deepEqual(parseRoute('#/dashboard'), { page: 'dashboard' });
    assert.deepEqual(parseRoute('#/videos/3f0c1a6e-2b7d-4f6c-9a49-0d6f6b1c2e11'), { page: 'video', id: '3f0c1a6e-2b7d-4f6c-9a49-0d6f6b1c2e11' });
    assert.deepEqual(parseRoute('#/nowhere'), { page: 'not-found', path: '/nowhere' });
    assert.deepEqual(parseRoute('#/videos/a/b'), { page: 'not-found', path: '/videos/a/b' });
    assert.deepEqual(parseRoute('#/videos/%E0%A4%A'), { page: 'not-found', path: '/videos/%E0%A4%A' });
  });

  it('takes the sign-in key from the bootstrap URL (/#/login?key=...), decoded', () => {
    assert.deepEqual(parseRoute('#/login'), { page: 'login', key: null });
    assert.deepEqual(parseRoute('#/login?key='), { page: 'login', key: null });
    assert.deepEqual(parseRoute('#/login?key=vsk_abc-DEF_123'), { page: 'login', key: 'vsk_abc-DEF_123' });
    assert.deepEqual(parseRoute('#/login?key=a%2Bb%3D%20c'), { page: 'login', key: 'a+b= c' });
  });

  it('writes fragments that read back as the same page', () => {
    for (const route of [{ page: 'videos' }, { page: 'upload' }, { page: 'dashboard' }, { page: 'video', id: 'a b/c' }, { page: 'login', key: null }, { page: 'login', key: 'k+y/=' }] as const) {
      assert.deepEqual(parseRoute(routeHash(route)), route);
    }
  });
});

/**
 * The app's pages live in the URL's fragment (/#/videos/<id>), so the server serves one page and no API
 * route is ever shadowed. Pure: no DOM, unit-tested with the service's tests.
 */
export type Route =
  | { page: 'login'; key: string | null }
  | { page: 'videos' }
  | { page: 'upload' }
  | { page: 'video'; id: string }
  | { page: 'dashboard' }
  | { page: 'not-found'; path: string };

export function parseRoute(hash: string): Route {
  const fragment = hash.replace(/^#/, '');
  const queryAt = fragment.indexOf('?');
  const path = (queryAt === -1 ? fragment : fragment.slice(0, queryAt)).replace(/\/+$/, '');
  const query = new URLSearchParams(queryAt === -1 ? '' : fragment.slice(queryAt + 1));
  if (path === '' || path === '/videos') return { page: 'videos' };
  if (path === '/login') return { page: 'login', key: query.get('key') || null };
  if (path === '/upload') return { page: 'upload' };
  if (path === '/dashboard') return { page: 'dashboard' };
  const video = /^\/videos\/([^/]+)$/.exec(path);
  if (video) {
    try {
      return { page: 'video', id: decodeURIComponent(video[1]!) };
    } catch {
      return { page: 'not-found', path };
    }
  }
  return { page: 'not-found', path };
}

/** The fragment of a page, for links and navigation. */
export function routeHash(route: Exclude<Route, { page: 'not-found' }>): string {
  switch (route.page) {
    case 'login':
      return route.key === null ? '#/login' : `#/login?key=${encodeURIComponent(route.key)}`;
    case 'video':
      return `#/videos/${encodeURIComponent(route.id)}`;
    default:
      return `#/${route.page}`;
  }
}

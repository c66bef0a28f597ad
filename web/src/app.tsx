import { useEffect, useState } from 'preact/hooks';
import { api, UNAUTHORIZED_EVENT, type Me } from './api.ts';
import { navigate, useRoute } from './hooks.ts';
import { routeHash } from './lib/route.ts';
import { DashboardPage } from './pages/dashboard.tsx';
import { LoginPage } from './pages/login.tsx';
import { UploadPage } from './pages/upload.tsx';
import { VideoPage } from './pages/video.tsx';
import { VideosPage } from './pages/videos.tsx';

/** Signed in (who), signed out, or not known yet (the first /auth/me is on its way). */
type Session = Me | null | undefined;

export function App() {
  const route = useRoute();
  const [session, setSession] = useState<Session>(undefined);

  useEffect(() => {
    api.me().then(setSession, () => setSession(null));
    // Any 401 from the API means the session is over: back to sign-in.
    const signedOut = () => setSession(null);
    window.addEventListener(UNAUTHORIZED_EVENT, signedOut);
    return () => window.removeEventListener(UNAUTHORIZED_EVENT, signedOut);
  }, []);

  const signedIn = (me: Me) => {
    setSession(me);
    navigate(routeHash({ page: 'videos' }), { replace: true });
  };

  if (route.page === 'login' || session === null) {
    return <LoginPage keyFromUrl={route.page === 'login' ? route.key : null} onSignedIn={signedIn} />;
  }
  if (session === undefined) return <p class="muted loading">Loading…</p>;

  const signOut = async () => {
    await api.signOut().catch(() => undefined);
    setSession(null);
    navigate(routeHash({ page: 'login', key: null }));
  };
  const current = route.page === 'video' ? 'videos' : route.page;
  return (
    <>
      <header class="top">
        <a class="brand" href={routeHash({ page: 'videos' })}>
          vidsense
        </a>
        <nav aria-label="Main">
          {(['videos', 'upload', 'dashboard'] as const).map((page) => (
            <a key={page} href={routeHash({ page })} aria-current={current === page ? 'page' : undefined}>
              {page[0]!.toUpperCase() + page.slice(1)}
            </a>
          ))}
        </nav>
        <span class="who">
          {session.name} <span class="muted">({session.scopes.join(', ')})</span>
        </span>
        <button type="button" class="secondary" onClick={() => void signOut()}>
          Sign out
        </button>
      </header>
      <main>
        {route.page === 'videos' && <VideosPage />}
        {route.page === 'upload' && <UploadPage />}
        {route.page === 'video' && <VideoPage id={route.id} />}
        {route.page === 'dashboard' && <DashboardPage />}
        {route.page === 'not-found' && (
          <p>
            No page at {route.path}. <a href={routeHash({ page: 'videos' })}>See the videos</a>.
          </p>
        )}
      </main>
    </>
  );
}

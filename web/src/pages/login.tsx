import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, type Me } from '../api.ts';
import { navigate } from '../hooks.ts';

interface LoginProps {
  /** A key from the sign-in URL the service logs at first start (/#/login?key=...). */
  keyFromUrl: string | null;
  onSignedIn: (me: Me) => void;
}

/**
 * Sign-in: an API key in, an HttpOnly session cookie out (POST /auth/session); the page never stores
 * the key. A key in the address (the bootstrap URL) is removed from it at once, then used.
 */
export function LoginPage({ keyFromUrl, onSignedIn }: LoginProps) {
  const [key, setKey] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const signIn = async (value: string) => {
    setBusy(true);
    setError(null);
    try {
      await api.signIn(value.trim());
      onSignedIn(await api.me());
    } catch (failure) {
      setError(failure instanceof ApiError && failure.status === 401 ? 'That key was not accepted (unknown or revoked).' : `Could not sign in: ${(failure as Error).message}`);
    } finally {
      setBusy(false);
    }
  };

  useEffect(() => {
    if (keyFromUrl === null) return;
    // Out of the address bar and history before anything else: the URL may be shared or bookmarked.
    navigate('#/login', { replace: true });
    void signIn(keyFromUrl);
  }, [keyFromUrl]);

  return (
    <main class="login">
      <h1>vidsense</h1>
      <form
        class="card"
        onSubmit={(event) => {
          event.preventDefault();
          if (key.trim() !== '') void signIn(key);
        }}
      >
        <h2>Sign in</h2>
        <p class="muted">
          Use an API key: the sign-in link the service printed at its first start, <code>data/api-key</code>, or a key from{' '}
          <code>npm run key -- create --scope read</code>.
        </p>
        <label for="api-key">API key</label>
        <input id="api-key" type="password" autocomplete="off" spellcheck={false} value={key} onInput={(event) => setKey(event.currentTarget.value)} />
        <button type="submit" disabled={busy || key.trim() === ''}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
        {error !== null && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
      </form>
    </main>
  );
}

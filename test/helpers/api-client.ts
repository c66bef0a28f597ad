/**
 * The API key every test deployment is started with (API_KEY; the same value as the admin token), and
 * fetch with it: new tests call the API through apiFetch, so the key travels on every request.
 */
export const TEST_API_KEY = 'test-admin-token';

export interface ApiFetchInit extends RequestInit {
  /** Another key to send, or null to send none (tests of refusals). Default: TEST_API_KEY. */
  apiKey?: string | null;
}

export function apiFetch(url: string | URL, { apiKey = TEST_API_KEY, ...init }: ApiFetchInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (apiKey !== null && !headers.has('authorization')) headers.set('authorization', `Bearer ${apiKey}`);
  return fetch(url, { ...init, headers });
}

import { useEffect, useRef, useState } from 'preact/hooks';
import { eventsUrl, type Progress } from './api.ts';
import { parseRoute, type Route } from './lib/route.ts';

/** The current page, from the URL's fragment; follows hashchange (links, back and forward). */
export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location.hash));
  useEffect(() => {
    const update = () => setRoute(parseRoute(window.location.hash));
    window.addEventListener('hashchange', update);
    return () => window.removeEventListener('hashchange', update);
  }, []);
  return route;
}

/** Goes to a page; replace: without a history entry (redirects, and removing a key from the address bar). */
export function navigate(hash: string, { replace = false } = {}): void {
  if (replace) {
    window.history.replaceState(null, '', `${window.location.pathname}${window.location.search}${hash}`);
    window.dispatchEvent(new HashChangeEvent('hashchange'));
  } else {
    window.location.hash = hash;
  }
}

/**
 * Live progress of one video over Server-Sent Events (GET /videos/:id/events): onProgress for each
 * `progress` event, onEnd once the video reached a final status (the server then closes the stream).
 * EventSource reconnects by itself after a dropped connection (the server sends retry: 3000).
 */
export function useVideoEvents(videoId: string | null, onProgress: (progress: Progress) => void, onEnd: () => void): void {
  const handlers = useRef({ onProgress, onEnd });
  handlers.current = { onProgress, onEnd };
  useEffect(() => {
    if (videoId === null) return;
    const source = new EventSource(eventsUrl(videoId));
    source.addEventListener('progress', (event) => handlers.current.onProgress(JSON.parse((event as MessageEvent<string>).data) as Progress));
    source.addEventListener('end', () => {
      source.close();
      handlers.current.onEnd();
    });
    return () => source.close();
  }, [videoId]);
}

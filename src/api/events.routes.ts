import { Router } from 'express';
import type { CatalogVideo, VideoCatalog } from '../db/video-catalog.repository.ts';
import type { ProgressHub } from '../services/progress-hub.ts';
import { progressSnapshot, TERMINAL_STATUSES } from '../services/progress.ts';
import { principalOf, requireScope } from './auth.ts';
import { findVisibleVideo } from './video-access.ts';

/** A comment line this often keeps proxies and browsers from dropping an idle stream. */
const PING_INTERVAL_MS = 15_000;

/**
 * GET /videos/:id/events: Server-Sent Events. A `progress` event at once and whenever the status or
 * counts change (at most once per PROGRESS_POLL_MS), `: ping` every 15 s, and after a terminal status
 * one last `progress` then `end`. At shutdown the stream just closes (the browser reconnects elsewhere).
 */
export function eventRoutes(catalog: VideoCatalog, hub: ProgressHub): Router {
  const router = Router();

  router.get('/videos/:id/events', requireScope<{ id: string }>('read'), async (req, res) => {
    const video = await findVisibleVideo(catalog, req.params.id, principalOf(res));
    // Gone while the video was read: no stream to keep (a listener registered now would never hear 'close').
    if (req.socket.destroyed) return;
    res.status(200).set({
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache, no-transform',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no', // nginx: pass events through instead of buffering them
    });
    res.flushHeaders();
    res.write('retry: 3000\n\n');

    let lastSent = '';
    let unwatch = () => {};
    let ping: NodeJS.Timeout | undefined;
    const stop = () => {
      clearInterval(ping);
      unwatch();
    };
    const send = (current: CatalogVideo) => {
      const snapshot = progressSnapshot(current, Date.now());
      const { etaSeconds: _eta, ...progress } = snapshot;
      const key = JSON.stringify(progress);
      if (key !== lastSent) {
        lastSent = key;
        res.write(`event: progress\ndata: ${JSON.stringify(snapshot)}\n\n`);
      }
      if (!TERMINAL_STATUSES.includes(current.status)) return false;
      res.write('event: end\ndata: {}\n\n');
      stop();
      res.end();
      return true;
    };

    if (send(video)) return;
    ping = setInterval(() => res.write(': ping\n\n'), PING_INTERVAL_MS);
    unwatch = hub.watch(video, {
      update: send,
      gone: () => {
        res.write('event: end\ndata: {}\n\n');
        stop();
        res.end();
      },
      closed: () => {
        stop();
        res.end();
      },
    });
    res.once('close', stop);
  });
  return router;
}

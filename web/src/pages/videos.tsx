import { useCallback, useEffect, useState } from 'preact/hooks';
import { api, TERMINAL_STATUSES, type Progress, type Video } from '../api.ts';
import { StatusBadge, VideoProgress } from '../components/progress.tsx';
import { useVideoEvents } from '../hooks.ts';
import { formatDuration } from '../lib/format.ts';
import { routeHash } from '../lib/route.ts';

/**
 * Live streams at once: a browser opens at most six HTTP/1.1 connections per host and each
 * EventSource holds one, so the newest unfinished videos stream and the list is refreshed for the rest.
 */
const MAX_STREAMS = 4;
const REFRESH_MS = 5000;

/** The videos this key can see, newest first, with live progress for those still being processed. */
export function VideosPage() {
  const [videos, setVideos] = useState<Video[] | null>(null);
  const [nextCursor, setNextCursor] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  const load = useCallback(async () => {
    try {
      const page = await api.videos(null);
      setVideos((current) => mergeFirstPage(current, page.items));
      setNextCursor((cursor) => cursor ?? page.nextCursor);
      setError(null);
    } catch (failure) {
      setError((failure as Error).message);
    }
  }, []);

  useEffect(() => {
    void load();
  }, [load]);

  const unfinished = (videos ?? []).filter((video) => !TERMINAL_STATUSES.has(video.status));
  const streamed = new Set(unfinished.slice(0, MAX_STREAMS).map((video) => video.id));
  // Unfinished videos beyond the streamed ones are kept fresh by reloading the first page now and then.
  const needsRefresh = unfinished.length > MAX_STREAMS;
  useEffect(() => {
    if (!needsRefresh) return;
    const timer = setInterval(() => void load(), REFRESH_MS);
    return () => clearInterval(timer);
  }, [needsRefresh, load]);

  const applyProgress = (progress: Progress) =>
    setVideos((current) => current && current.map((video) => (video.id === progress.id ? { ...video, ...progress } : video)));
  const reloadVideo = async (id: string) => {
    try {
      const fresh = await api.video(id);
      setVideos((current) => current && current.map((video) => (video.id === id ? fresh : video)));
    } catch {
      // Gone or not visible any more: the next list load says so.
    }
  };

  const loadMore = async () => {
    if (nextCursor === null) return;
    const page = await api.videos(nextCursor);
    setVideos((current) => [...(current ?? []), ...page.items.filter((item) => !current?.some((video) => video.id === item.id))]);
    setNextCursor(page.nextCursor);
  };

  return (
    <section>
      <header class="page-header">
        <h1>Videos</h1>
        <a class="button" href={routeHash({ page: 'upload' })}>
          Upload a video
        </a>
      </header>
      {error !== null && (
        <p class="error" role="alert">
          Could not load the videos: {error}
        </p>
      )}
      {videos === null ? (
        <p class="muted">Loading…</p>
      ) : videos.length === 0 ? (
        <p class="muted">
          No videos yet. <a href={routeHash({ page: 'upload' })}>Upload one</a>.
        </p>
      ) : (
        <table class="videos">
          <thead>
            <tr>
              <th scope="col">Video</th>
              <th scope="col">Status</th>
              <th scope="col">Progress</th>
              <th scope="col">Duration</th>
              <th scope="col">Top classes</th>
              <th scope="col">Failed frames</th>
              <th scope="col">Uploaded</th>
            </tr>
          </thead>
          <tbody>
            {videos.map((video) => (
              <VideoRow key={video.id} video={video} live={streamed.has(video.id)} onProgress={applyProgress} onEnd={() => void reloadVideo(video.id)} />
            ))}
          </tbody>
        </table>
      )}
      {nextCursor !== null && (
        <button type="button" class="secondary" onClick={() => void loadMore()}>
          Load more
        </button>
      )}
    </section>
  );
}

function VideoRow({ video, live, onProgress, onEnd }: { video: Video; live: boolean; onProgress: (progress: Progress) => void; onEnd: () => void }) {
  useVideoEvents(live ? video.id : null, onProgress, onEnd);
  return (
    <tr data-video-id={video.id} data-status={video.status}>
      <td>
        <a href={routeHash({ page: 'video', id: video.id })}>{video.originalName}</a>
      </td>
      <td>
        <StatusBadge status={video.status} />
      </td>
      <td>
        <VideoProgress progress={video} label={`Progress of ${video.originalName}`} />
      </td>
      <td>{formatDuration(video.source.durationMs)}</td>
      <td>{video.topClasses.length === 0 ? <span class="muted">none</span> : video.topClasses.map((top) => `${top.className} (${top.count})`).join(', ')}</td>
      <td>{video.framesFailed}</td>
      <td>
        <time dateTime={video.createdAt}>{new Date(video.createdAt).toLocaleString()}</time>
      </td>
    </tr>
  );
}

/** A reloaded first page replaces those videos and keeps the older ones loaded with "Load more". */
function mergeFirstPage(current: Video[] | null, first: Video[]): Video[] {
  if (current === null) return first;
  const ids = new Set(first.map((video) => video.id));
  return [...first, ...current.filter((video) => !ids.has(video.id))];
}

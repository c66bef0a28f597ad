import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, ApiError, exportUrl, loadAllFrames, TERMINAL_STATUSES, type Frame, type Summary, type Video } from '../api.ts';
import { Player } from '../components/player.tsx';
import { StatusBadge, VideoProgress } from '../components/progress.tsx';
import { Timeline } from '../components/timeline.tsx';
import { useVideoEvents } from '../hooks.ts';
import { timelineBucketSeconds } from '../lib/charts.ts';
import { formatBytes, formatDuration } from '../lib/format.ts';
import { classColor } from '../lib/overlay.ts';
import { routeHash } from '../lib/route.ts';

/** How often a video whose preview is still being made is read again. */
const PREVIEW_POLL_MS = 2000;

/**
 * One video: live progress, the preview with its detections drawn over it, class and confidence
 * filters, the per-class timeline (click to seek) and the downloads.
 */
export function VideoPage({ id }: { id: string }) {
  const [video, setVideo] = useState<Video | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [frames, setFrames] = useState<Frame[]>([]);
  const [framesDone, setFramesDone] = useState(false);
  const [summary, setSummary] = useState<Summary | null>(null);
  const [hidden, setHidden] = useState<ReadonlySet<string>>(new Set());
  const [minConfidence, setMinConfidence] = useState(0);
  const [player, setPlayer] = useState<HTMLVideoElement | null>(null);
  // Bumped when processing ends, so detections and the summary are read again in full.
  const [resultsVersion, setResultsVersion] = useState(0);
  // A cancel or delete request in flight: its buttons are disabled meanwhile.
  const [stopping, setStopping] = useState(false);

  const reloadVideo = async () => {
    try {
      setVideo(await api.video(id));
      setError(null);
    } catch (failure) {
      setError(failure instanceof ApiError && failure.status === 404 ? 'No such video (or it belongs to another key).' : (failure as Error).message);
    }
  };

  useEffect(() => {
    setVideo(null);
    void reloadVideo();
  }, [id]);

  const loaded = video !== null && video.id === id;
  const finished = loaded && TERMINAL_STATUSES.has(video.status);
  useVideoEvents(
    loaded && !finished ? id : null,
    (progress) => {
      // A new stage may bring more than progress: the preview is there once extraction is over.
      if (video !== null && progress.status !== video.status) void reloadVideo();
      setVideo((current) => current && { ...current, ...progress });
    },
    () => {
      void reloadVideo();
      setResultsVersion((version) => version + 1);
    },
  );

  // The preview may come after the video completes (it is made while the frames are detected, at a lower
  // priority): until it is there or given up, the video is read again every few seconds.
  const previewPending = loaded && video.previewPending;
  useEffect(() => {
    if (!previewPending) return;
    const timer = setInterval(() => void reloadVideo(), PREVIEW_POLL_MS);
    return () => clearInterval(timer);
  }, [id, previewPending]);

  const durationMs = loaded ? video.source.durationMs : null;
  useEffect(() => {
    if (!loaded) return;
    const abort = new AbortController();
    setFramesDone(false);
    loadAllFrames(id, abort.signal, (sofar) => setFrames(sofar.sort((a, b) => a.ptsMs - b.ptsMs)))
      .then(() => setFramesDone(true))
      .catch((failure: Error) => {
        if (failure.name !== 'AbortError') setError(`Could not load the detections: ${failure.message}`);
      });
    api.summary(id, timelineBucketSeconds(durationMs)).then(setSummary, (failure: Error) => setError(`Could not load the summary: ${failure.message}`));
    return () => abort.abort();
  }, [id, loaded, resultsVersion]);

  const classes = useMemo(() => classList(summary, frames), [summary, frames]);
  const filter = useMemo(() => ({ hidden, minConfidence }), [hidden, minConfidence]);

  if (error !== null && !loaded) {
    return (
      <section>
        <p class="error" role="alert">
          {error}
        </p>
        <a href={routeHash({ page: 'videos' })}>Back to the videos</a>
      </section>
    );
  }
  if (!loaded) return <p class="muted">Loading…</p>;

  const cancel = async () => {
    setStopping(true);
    try {
      setVideo(await api.cancelVideo(id));
      setResultsVersion((version) => version + 1);
      setError(null);
    } catch (failure) {
      setError(`Could not cancel: ${(failure as Error).message}`);
      void reloadVideo();
    } finally {
      setStopping(false);
    }
  };

  const remove = async () => {
    if (!window.confirm(`Delete "${video.originalName}" with its preview and all its detections? This cannot be undone.`)) return;
    setStopping(true);
    try {
      await api.deleteVideo(id);
      window.location.hash = routeHash({ page: 'videos' });
    } catch (failure) {
      // 404: deleted meanwhile (another tab, another client): what was asked for is done.
      if (failure instanceof ApiError && failure.status === 404) window.location.hash = routeHash({ page: 'videos' });
      else setError(`Could not delete: ${(failure as Error).message}`);
    } finally {
      setStopping(false);
    }
  };

  const toggle = (className: string) => {
    const next = new Set(hidden);
    if (next.has(className)) next.delete(className);
    else next.add(className);
    setHidden(next);
  };

  return (
    <section class="video-page">
      <header class="page-header">
        <h1>{video.originalName}</h1>
        <StatusBadge status={video.status} />
      </header>
      {error !== null && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div class="video-layout">
        <div class="video-main">
          {video.preview ? (
            <Player src={video.preview.url} mimeType={video.preview.mimeType} source={video.source} frames={frames} filter={filter} video={player} videoRef={setPlayer} />
          ) : (
            <div class="no-preview">
              {video.previewPending
                ? 'Preparing the preview…'
                : video.status === 'cancelled'
                ? 'No preview: the video was cancelled before it was made. Its detections so far are below and in the downloads.'
                : finished
                  ? 'No preview: this video could not be converted to a format browsers play. Its detections are below and in the downloads.'
                  : 'Preparing the preview…'}
            </div>
          )}
          <h2>Timeline</h2>
          {summary === null ? <p class="muted">Loading…</p> : <Timeline summary={summary} durationMs={durationMs} hidden={hidden} video={player} finished={finished} />}
        </div>
        <aside class="video-side">
          <div class="card">
            <h2>Progress</h2>
            <VideoProgress progress={video} label="Processing progress" />
            {video.error !== null && <p class="error">{video.error}</p>}
            <dl class="facts">
              <dt>Failed frames</dt>
              <dd>{video.framesFailed}</dd>
              <dt>Duration</dt>
              <dd>{formatDuration(video.source.durationMs)}</dd>
              <dt>Source</dt>
              <dd>
                {video.source.width}×{video.source.height}, {video.source.codec}
                {video.source.fps === null ? '' : `, ${Math.round(video.source.fps * 100) / 100} fps`}, {formatBytes(video.sizeBytes)}
              </dd>
              <dt>Sampled</dt>
              <dd>{video.sampleFps === null ? 'every frame' : `${video.sampleFps} frames per second`}</dd>
              <dt>Captured</dt>
              <dd>
                <time dateTime={video.capturedAt}>{new Date(video.capturedAt).toLocaleString()}</time>
              </dd>
            </dl>
          </div>
          <div class="card">
            <h2>Filters</h2>
            <fieldset class="classes">
              <legend>Classes</legend>
              {classes.length === 0 && <p class="muted">{!framesDone ? 'Loading…' : finished ? 'No detections.' : 'None yet.'}</p>}
              {classes.map(({ className, count }) => (
                <label key={className} class="class-choice">
                  <input type="checkbox" checked={!hidden.has(className)} onChange={() => toggle(className)} />
                  <i class="swatch" style={{ background: classColor(className) }} />
                  {className}
                  <span class="count" aria-hidden="true">
                    {count}
                  </span>
                </label>
              ))}
            </fieldset>
            <label for="min-confidence">Minimum confidence</label>
            <div class="range">
              <input
                id="min-confidence"
                type="range"
                min={0}
                max={1}
                step={0.05}
                value={minConfidence}
                onInput={(event) => setMinConfidence(Number(event.currentTarget.value))}
              />
              <output for="min-confidence">{minConfidence.toFixed(2)}</output>
            </div>
            <p class="muted">
              {frames.length} frames{framesDone ? '' : ' so far'} with results.
            </p>
          </div>
          <div class="card downloads">
            <h2>Download detections</h2>
            <a class="button" href={exportUrl(video.id, 'csv')} download>
              Download CSV
            </a>
            <a class="button secondary" href={exportUrl(video.id, 'json')} download>
              Download JSON
            </a>
          </div>
          <div class="card manage">
            <h2>Manage</h2>
            {!finished && (
              <button type="button" class="secondary" disabled={stopping} onClick={() => void cancel()}>
                Cancel processing
              </button>
            )}
            <button type="button" class="danger" disabled={stopping} onClick={() => void remove()}>
              Delete video
            </button>
          </div>
        </aside>
      </div>
    </section>
  );
}

/** The classes to filter by, most detections first: the summary's counts, plus any seen in frames not yet summarised. */
function classList(summary: Summary | null, frames: Frame[]): Array<{ className: string; count: number }> {
  const counts = new Map<string, number>(summary?.classes.map((entry) => [entry.className, entry.count]) ?? []);
  for (const frame of frames) for (const detection of frame.detections) if (!counts.has(detection.className)) counts.set(detection.className, 0);
  return [...counts.entries()].map(([className, count]) => ({ className, count })).sort((a, b) => b.count - a.count || a.className.localeCompare(b.className));
}

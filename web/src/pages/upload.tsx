import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, uploadVideo } from '../api.ts';
import { navigate } from '../hooks.ts';
import { formatBytes } from '../lib/format.ts';
import { routeHash } from '../lib/route.ts';

const FPS_CHOICES: Array<{ value: string; label: string }> = [
  { value: '', label: "The service's default" },
  { value: '1', label: '1 frame per second' },
  { value: '2', label: '2 frames per second' },
  { value: '5', label: '5 frames per second' },
  { value: '10', label: '10 frames per second' },
  { value: '15', label: '15 frames per second' },
  { value: '30', label: '30 frames per second' },
  { value: 'all', label: 'Every frame' },
];

/** Upload: pick or drop a video, choose the sampling rate, watch the bytes go up, then see the video's page. */
export function UploadPage() {
  const [file, setFile] = useState<File | null>(null);
  const [fps, setFps] = useState('');
  const [sent, setSent] = useState<{ loaded: number; total: number } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [dragging, setDragging] = useState(false);
  const upload = useRef<AbortController | null>(null);
  useEffect(() => () => upload.current?.abort(), []);
  // From the first byte until the page moves on to the video (or the upload fails or is cancelled).
  const uploading = sent !== null;

  const start = async () => {
    if (!file) return;
    const controller = new AbortController();
    upload.current = controller;
    setError(null);
    setSent({ loaded: 0, total: file.size });
    try {
      const { id } = await uploadVideo(file, fps, (loaded, total) => setSent({ loaded, total }), controller.signal);
      navigate(routeHash({ page: 'video', id }));
    } catch (failure) {
      if ((failure as Error).name !== 'AbortError') setError(failure instanceof ApiError ? failure.message : String(failure));
      setSent(null);
    } finally {
      upload.current = null;
    }
  };

  const percent = sent === null || sent.total === 0 ? 0 : Math.round((sent.loaded / sent.total) * 100);
  return (
    <section>
      <header class="page-header">
        <h1>Upload a video</h1>
      </header>
      <form
        class="card upload"
        onSubmit={(event) => {
          event.preventDefault();
          void start();
        }}
      >
        <div
          class={`dropzone${dragging ? ' dragging' : ''}`}
          onDragOver={(event) => {
            event.preventDefault();
            setDragging(true);
          }}
          onDragLeave={() => setDragging(false)}
          onDrop={(event) => {
            event.preventDefault();
            setDragging(false);
            const dropped = event.dataTransfer?.files[0];
            if (dropped) setFile(dropped);
          }}
        >
          <p>Drop a video here, or choose one:</p>
          <label for="video-file">Video file</label>
          <input
            id="video-file"
            type="file"
            accept="video/*,.avi,.mkv,.mov,.mp4,.m4v,.webm,.ts,.mts,.flv,.wmv,.3gp"
            disabled={uploading}
            onChange={(event) => setFile(event.currentTarget.files?.[0] ?? null)}
          />
          {file && (
            <p class="muted">
              {file.name}, {formatBytes(file.size)}
            </p>
          )}
        </div>
        <label for="fps">Frames per second</label>
        <select id="fps" value={fps} disabled={uploading} onChange={(event) => setFps(event.currentTarget.value)}>
          {FPS_CHOICES.map((choice) => (
            <option key={choice.value} value={choice.value}>
              {choice.label}
            </option>
          ))}
        </select>
        <p class="muted">Frames sampled from the video for detection; fewer is faster. The whole video is still previewed.</p>
        <div class="upload-progress">
          <progress aria-label="Upload progress" max={100} value={percent} />
          <span>{sent === null ? 'Not started' : `${formatBytes(sent.loaded)} of ${formatBytes(sent.total)} (${percent}%)`}</span>
        </div>
        <div class="actions">
          <button type="submit" disabled={!file || uploading}>
            Upload
          </button>
          {uploading && (
            <button type="button" class="secondary" onClick={() => upload.current?.abort()}>
              Cancel
            </button>
          )}
        </div>
        {error !== null && (
          <p class="error" role="alert">
            The upload was refused: {error}
          </p>
        )}
      </form>
    </section>
  );
}

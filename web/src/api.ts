/**
 * The service's HTTP API as the page uses it (contract-web.md; /openapi.json describes all of it). Same
 * origin, so the HttpOnly session cookie travels with every request and the page never holds a key.
 */
export type VideoStatus = 'queued' | 'extracting' | 'processing' | 'completed' | 'failed' | 'cancelled';

export const TERMINAL_STATUSES: ReadonlySet<VideoStatus> = new Set(['completed', 'failed', 'cancelled']);

export interface ClassCount {
  className: string;
  count: number;
}

export interface Video {
  id: string;
  status: VideoStatus;
  originalName: string;
  sizeBytes: number;
  sampleFps: number | null;
  framesTotal: number | null;
  framesDone: number;
  framesFailed: number;
  etaSeconds: number | null;
  source: { durationMs: number | null; fps: number | null; width: number; height: number; codec: string; creationTime: string | null };
  capturedAt: string;
  createdAt: string;
  updatedAt: string;
  completedAt: string | null;
  error: string | null;
  topClasses: ClassCount[];
  preview: { url: string; mimeType: string } | null;
  /** The preview is still being made (it may come after the video completes). */
  previewPending: boolean;
}

/** What GET /videos/:id/events sends as `progress`. */
export type Progress = Pick<Video, 'id' | 'status' | 'framesDone' | 'framesTotal' | 'framesFailed' | 'etaSeconds'>;

export interface Detection {
  classId: number;
  className: string;
  confidence: number;
  /** [x1, y1, x2, y2] in source pixels. */
  box: [number, number, number, number];
}

export interface Frame {
  frameIndex: number;
  ptsMs: number;
  detections: Detection[];
}

export interface Summary {
  videoId: string;
  bucketSeconds: number;
  classes: ClassCount[];
  buckets: Array<{ startMs: number; counts: Record<string, number> }>;
}

export interface Counts {
  bucket: '1m' | '1h' | '1d';
  tz: string;
  from: string;
  to: string;
  series: Array<{ bucketStart: string; className: string; count: number }>;
}

export interface Me {
  keyId: string;
  name: string;
  scopes: string[];
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** Dispatched on window when the API answers 401: the session ended (expired, revoked, signed out elsewhere). */
export const UNAUTHORIZED_EVENT = 'vidsense:unauthorized';

async function request<T>(path: string, init: RequestInit = {}): Promise<T> {
  const response = await fetch(path, { credentials: 'same-origin', ...init, headers: { accept: 'application/json', ...init.headers } });
  if (!response.ok) throw await toApiError(response);
  if (response.status === 204) return undefined as T;
  return (await response.json()) as T;
}

async function toApiError(response: Response): Promise<ApiError> {
  let code = 'http_error';
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = (await response.json()) as { error?: { code?: string; message?: string } };
    code = body.error?.code ?? code;
    message = body.error?.message ?? message;
  } catch {
    // Not the API's JSON (a proxy's page): the status line says enough.
  }
  if (response.status === 401 && !response.url.endsWith('/auth/session')) window.dispatchEvent(new Event(UNAUTHORIZED_EVENT));
  return new ApiError(response.status, code, message);
}

const json = (body: unknown): RequestInit => ({ body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
const videoPath = (id: string) => `/videos/${encodeURIComponent(id)}`;

export const api = {
  me: () => request<Me>('/auth/me'),
  signIn: (key: string) => request<void>('/auth/session', { method: 'POST', ...json({ key }) }),
  signOut: () => request<void>('/auth/session', { method: 'DELETE' }),
  videos: (cursor: string | null, limit = 50) =>
    request<{ items: Video[]; nextCursor: string | null }>(`/videos?limit=${limit}${cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`}`),
  video: (id: string) => request<Video>(videoPath(id)),
  /** 409 video_finished when it already completed or failed. */
  cancelVideo: (id: string) => request<Video>(`${videoPath(id)}/cancel`, { method: 'POST' }),
  deleteVideo: (id: string) => request<void>(videoPath(id), { method: 'DELETE' }),
  detections: (id: string, cursor: number | null, signal?: AbortSignal) =>
    request<{ frames: Frame[]; nextCursor: number | null }>(`${videoPath(id)}/detections?limit=1000${cursor === null ? '' : `&cursor=${cursor}`}`, { signal }),
  summary: (id: string, bucketSeconds: number) => request<Summary>(`${videoPath(id)}/summary?bucket=${bucketSeconds}`),
  counts: (query: { className: string | null; from: Date; to: Date; bucket: string; tz: string }) => {
    const params = new URLSearchParams({ from: query.from.toISOString(), to: query.to.toISOString(), bucket: query.bucket, tz: query.tz });
    if (query.className !== null) params.set('class', query.className);
    return request<Counts>(`/analytics/counts?${params}`);
  },
};

export const eventsUrl = (id: string) => `${videoPath(id)}/events`;
export const exportUrl = (id: string, format: 'csv' | 'json') => `${videoPath(id)}/detections/export?format=${format}`;

/** Every frame of a video's detections, a page of 1000 frames at a time; onPage sees them accumulate. */
export async function loadAllFrames(id: string, signal: AbortSignal, onPage: (frames: Frame[]) => void): Promise<Frame[]> {
  const frames: Frame[] = [];
  let cursor: number | null = null;
  do {
    const page = await api.detections(id, cursor, signal);
    frames.push(...page.frames);
    onPage(frames.slice());
    cursor = page.nextCursor;
  } while (cursor !== null);
  return frames;
}

/**
 * POST /videos with upload progress: fetch() cannot report upload progress, XMLHttpRequest can.
 * Resolves with the accepted video's id; rejects with ApiError (or an AbortError when aborted).
 */
export function uploadVideo(file: File, fps: string, onProgress: (loaded: number, total: number) => void, signal: AbortSignal): Promise<{ id: string }> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/videos');
    xhr.responseType = 'json';
    xhr.setRequestHeader('accept', 'application/json');
    xhr.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total);
    });
    xhr.addEventListener('load', () => {
      const body = xhr.response as { id?: string; error?: { code?: string; message?: string } } | null;
      if (xhr.status === 202 && typeof body?.id === 'string') return resolve({ id: body.id });
      if (xhr.status === 401) window.dispatchEvent(new Event(UNAUTHORIZED_EVENT));
      reject(new ApiError(xhr.status, body?.error?.code ?? 'http_error', body?.error?.message ?? `upload failed (${xhr.status})`));
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, 'network_error', 'the upload did not reach the server (network error)')));
    xhr.addEventListener('abort', () => reject(new DOMException('upload cancelled', 'AbortError')));
    signal.addEventListener('abort', () => xhr.abort(), { once: true });
    const form = new FormData();
    if (fps !== '') form.append('fps', fps);
    form.append('video', file, file.name);
    xhr.send(form);
  });
}

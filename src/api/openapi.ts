/**
 * The one description of the HTTP API (OpenAPI 3.1), served at GET /openapi.json. A test checks it
 * both ways against the routes the Express app registers, and validates real responses against its
 * schemas (test/unit/api/openapi.spec.ts, test/integration/web-api.spec.ts). `x-scope` names the
 * scope an operation needs; operations without it are public.
 */

type Schema = Record<string, unknown>;

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const nullable = (schema: Schema): Schema => ({ anyOf: [schema, { type: 'null' }] });
const dateTime: Schema = { type: 'string', format: 'date-time' };
const uuid: Schema = { type: 'string', format: 'uuid' };
const object = (properties: Record<string, Schema>, optional: string[] = []): Schema => ({
  type: 'object',
  required: Object.keys(properties).filter((name) => !optional.includes(name)),
  properties,
  additionalProperties: false,
});
const json = (description: string, schema: Schema) => ({ description, content: { 'application/json': { schema } } });

const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: 'invalid request (the message names the parameter)',
  401: 'no key, or an unknown, revoked or expired key or session',
  403: 'the key lacks the scope this operation needs',
  404: 'no such resource, or a video of another key',
  409: 'the video already completed or failed: only a queued, extracting or processing video can be cancelled (code video_finished)',
  408: 'the upload did not arrive in time (REQUEST_TIMEOUT_MS, IDLE_TIMEOUT_MS); see Retry-After',
  413: 'the upload exceeds MAX_UPLOAD_BYTES',
  415: 'not a decodable video, or a container outside the allowlist (playlists, manifests, concat lists)',
  422: 'a video that cannot be used (truncated, zero dimensions) or over a limit (MAX_PIXELS, MAX_DURATION_S, MAX_FRAMES, no frame sampled, MEDIA_MEMORY_LIMIT_BYTES)',
  429: 'MAX_UPLOADS_PER_CLIENT uploads of this client in progress; see Retry-After',
  503: 'PostgreSQL or Redis is unreachable, MAX_CONCURRENT_UPLOADS uploads in progress (server_busy, with Retry-After), or a cancel or delete could not remove all of the video\'s jobs and files yet (cleanup_incomplete: send it again)',
  507: 'storage full, or below MIN_FREE_BYTES free; see Retry-After',
};
const errorResponses = (...statuses: number[]) => Object.fromEntries(statuses.map((status) => [String(status), json(ERROR_DESCRIPTIONS[status]!, ref('Error'))]));
/** Every authenticated operation may answer these. */
const guarded = (scope: string, ...statuses: number[]) => ({ 'x-scope': scope, responses: errorResponses(401, 403, 503, ...statuses) });
const idParameter = (name = 'id', description = 'video id') => ({ name, in: 'path', required: true, description, schema: name === 'id' ? uuid : { type: 'string' } });
const query = (name: string, description: string, schema: Schema) => ({ name, in: 'query', required: false, description, schema });

function operation(id: string, summary: string, base: { 'x-scope'?: string; responses: Record<string, unknown> }, details: { parameters?: unknown[]; requestBody?: unknown; responses: Record<string, unknown>; security?: unknown[]; description?: string }) {
  return {
    operationId: id,
    summary,
    ...(details.description ? { description: details.description } : {}),
    ...(base['x-scope'] ? { 'x-scope': base['x-scope'] } : { security: [] }),
    ...(details.parameters ? { parameters: details.parameters } : {}),
    ...(details.requestBody ? { requestBody: details.requestBody } : {}),
    responses: { ...details.responses, ...base.responses },
  };
}
const publicOperation = { responses: {} };

const schemas: Record<string, Schema> = {
  Error: object({ error: object({ code: { type: 'string' }, message: { type: 'string' } }) }),
  Scope: { type: 'string', enum: ['upload', 'read', 'admin'] },
  VideoStatus: { type: 'string', enum: ['queued', 'extracting', 'processing', 'completed', 'failed', 'cancelled'] },
  ClassCount: object({ className: { type: 'string' }, count: { type: 'integer', minimum: 0 } }),
  VideoPreview: object({ url: { type: 'string' }, mimeType: { type: 'string', enum: ['video/mp4', 'video/webm'] } }),
  Video: object({
    id: uuid,
    status: ref('VideoStatus'),
    originalName: { type: 'string' },
    sizeBytes: { type: 'integer', minimum: 0 },
    sampleFps: nullable({ type: 'number', exclusiveMinimum: 0 }),
    framesTotal: nullable({ type: 'integer', minimum: 0 }),
    framesDone: { type: 'integer', minimum: 0 },
    framesFailed: { type: 'integer', minimum: 0 },
    etaSeconds: { ...nullable({ type: 'number', minimum: 0 }), description: 'seconds until done at the observed frame rate; 0 when completed; null when unknown' },
    source: object({
      durationMs: nullable({ type: 'number' }),
      fps: nullable({ type: 'number' }),
      width: { type: 'integer' },
      height: { type: 'integer' },
      codec: { type: 'string' },
      creationTime: nullable(dateTime),
    }),
    capturedAt: dateTime,
    createdAt: dateTime,
    updatedAt: dateTime,
    completedAt: nullable(dateTime),
    error: nullable({ type: 'string' }),
    topClasses: { type: 'array', maxItems: 5, items: ref('ClassCount') },
    preview: nullable(ref('VideoPreview')),
    previewPending: {
      type: 'boolean',
      description: 'True while the preview is being made: it is written after the frames are extracted, while they are detected, so a completed video may still be waiting for it. False once it is there (preview) or will not be (preview null).',
    },
  }),
  VideoPage: object({ items: { type: 'array', items: ref('Video') }, nextCursor: nullable({ type: 'string' }) }),
  Accepted: object({ id: uuid, status: ref('VideoStatus') }),
  Detection: object({
    classId: { type: 'integer', minimum: 0 },
    className: { type: 'string' },
    confidence: { type: 'number', minimum: 0, maximum: 1 },
    box: { type: 'array', items: { type: 'number' }, minItems: 4, maxItems: 4, description: '[x1, y1, x2, y2] in source pixels' },
  }),
  Frame: object(
    { frameIndex: { type: 'integer', minimum: 0 }, ptsMs: { type: 'integer' }, detections: { type: 'array', items: ref('Detection') }, error: { type: 'string' } },
    ['error'],
  ),
  FramesPage: object({ frames: { type: 'array', items: ref('Frame') }, nextCursor: nullable({ type: 'integer' }) }),
  Progress: object({
    id: uuid,
    status: ref('VideoStatus'),
    framesDone: { type: 'integer', minimum: 0 },
    framesTotal: nullable({ type: 'integer', minimum: 0 }),
    framesFailed: { type: 'integer', minimum: 0 },
    etaSeconds: nullable({ type: 'number', minimum: 0 }),
  }),
  Summary: object({
    videoId: uuid,
    bucketSeconds: { type: 'integer', minimum: 1, maximum: 3600 },
    classes: { type: 'array', items: ref('ClassCount') },
    buckets: {
      type: 'array',
      items: object({ startMs: { type: 'integer', minimum: 0 }, counts: { type: 'object', additionalProperties: { type: 'integer', minimum: 1 } } }),
    },
  }),
  AnalyticsCounts: object({
    bucket: { type: 'string', enum: ['1m', '1h', '1d'] },
    tz: { type: 'string' },
    from: dateTime,
    to: dateTime,
    series: {
      type: 'array',
      items: object({
        bucketStart: { ...dateTime, description: "the bucket's start in tz, with that zone's offset at the time (e.g. 2024-10-27T02:00:00+01:00)" },
        className: { type: 'string' },
        count: { type: 'integer', minimum: 1 },
      }),
    },
  }),
  ExportedDetection: object({
    frameIndex: { type: 'integer' },
    ptsMs: { type: 'integer' },
    capturedAt: dateTime,
    classId: { type: 'integer' },
    className: { type: 'string' },
    confidence: { type: 'number' },
    x1: { type: 'number' },
    y1: { type: 'number' },
    x2: { type: 'number' },
    y2: { type: 'number' },
  }),
  Me: object({ keyId: uuid, name: { type: 'string' }, scopes: { type: 'array', items: ref('Scope') } }),
  ApiKey: object({ id: uuid, name: { type: 'string' }, scopes: { type: 'array', items: ref('Scope') }, createdAt: dateTime, lastUsedAt: nullable(dateTime) }),
  ApiKeyList: object({ items: { type: 'array', items: ref('ApiKey') } }),
  NewApiKey: object({ name: { type: 'string', minLength: 1, maxLength: 100 }, scopes: { type: 'array', minItems: 1, items: ref('Scope') } }),
  CreatedApiKey: object({ id: uuid, name: { type: 'string' }, scopes: { type: 'array', items: ref('Scope') }, key: { type: 'string', description: 'shown once' }, createdAt: dateTime }),
  SignIn: object({ key: { type: 'string' } }),
  DeadLetter: object({
    job: {
      type: 'object',
      required: ['id', 'videoId', 'frames'],
      properties: {
        id: { type: 'string' },
        videoId: uuid,
        frames: { type: 'array', items: object({ index: { type: 'integer' }, ptsMs: { type: 'integer' }, key: { type: 'string' } }) },
        publishedAt: { type: 'integer' },
        attempts: { type: 'integer' },
      },
    },
    error: { type: 'string' },
    attempts: { type: 'integer' },
    failedAt: dateTime,
  }),
  DeadLetterList: object({ total: { type: 'integer', minimum: 0 }, items: { type: 'array', items: ref('DeadLetter') } }),
  Requeued: object({ jobId: { type: 'string' }, status: { const: 'requeued' } }),
  Health: object({ status: { const: 'ok' } }),
  Readiness: object({
    status: { type: 'string', enum: ['ready', 'not_ready'] },
    checks: { type: 'object', additionalProperties: { type: 'object', required: ['ok'], properties: { ok: { type: 'boolean' }, detail: {} } } },
  }),
};

const read = guarded('read');
const videoRead = guarded('read', 404);

export const openApiDocument = {
  openapi: '3.1.0',
  info: {
    title: 'vidsense',
    version: '0.1.0',
    description: 'Video ingestion and YOLOv8 object detection. Every error is {"error":{"code","message"}}. Keys carry scopes (upload, read, admin; admin implies the others); a key sees the videos it uploaded, an admin key all of them.',
  },
  security: [{ bearerKey: [] }, { sessionCookie: [] }],
  paths: {
    '/healthz': { get: operation('health', 'Liveness', publicOperation, { responses: { '200': json('the process is up', ref('Health')) } }) },
    '/readyz': {
      get: operation('readiness', 'Readiness of Redis, PostgreSQL and the model or storage', publicOperation, {
        responses: { '200': json('ready', ref('Readiness')), '503': json('not ready', ref('Readiness')) },
      }),
    },
    '/': {
      get: operation('webApp', 'The web app (index.html; its files are under /assets/, cached for a year)', publicOperation, {
        description: 'Built from web/ into WEB_DIR. Its pages are in the URL fragment (/#/videos, /#/upload, /#/videos/{id}, /#/dashboard, /#/login?key=...), so this is the only page the server serves.',
        responses: {
          '200': { description: 'the page (Cache-Control: no-cache, a same-origin Content-Security-Policy)', content: { 'text/html': { schema: { type: 'string' } } } },
          '404': json('the web app is not built (npm run build:web)', ref('Error')),
        },
      }),
    },
    '/openapi.json': { get: operation('openapi', 'This document', publicOperation, { responses: { '200': json('OpenAPI 3.1', { type: 'object' }) } }) },
    '/metrics': {
      get: operation('metrics', 'Prometheus metrics of this API process', guarded('admin'), {
        responses: { '200': { description: 'Prometheus text format', content: { 'text/plain': { schema: { type: 'string' } } } } },
      }),
    },
    '/auth/session': {
      post: operation('signIn', 'Sign in: a key in, a session cookie out', { responses: errorResponses(400, 401, 503) }, {
        requestBody: { required: true, content: { 'application/json': { schema: ref('SignIn') } } },
        responses: { '204': { description: 'signed in; Set-Cookie: vidsense_session=…; HttpOnly; SameSite=Strict; Path=/' } },
      }),
      delete: operation('signOut', 'Sign out: the session is revoked and the cookie cleared', { responses: errorResponses(503) }, {
        responses: { '204': { description: 'signed out (also when there was no session)' } },
      }),
    },
    '/auth/me': {
      get: operation('me', 'The key behind this request (Bearer key or session)', { 'x-scope': 'any', responses: errorResponses(401, 503) }, {
        responses: { '200': json('the key', ref('Me')) },
      }),
    },
    '/videos': {
      post: operation('uploadVideo', 'Upload a video', guarded('upload', 400, 408, 413, 415, 422, 429, 507), {
        requestBody: {
          required: true,
          content: {
            'multipart/form-data': {
              schema: {
                type: 'object',
                required: ['video'],
                properties: { video: { type: 'string', format: 'binary' }, fps: { type: 'string', description: 'frames per second to sample, or "all"; default DEFAULT_FPS' } },
              },
            },
          },
        },
        responses: { '202': { ...json('accepted; Location: /videos/{id}', ref('Accepted')), headers: { Location: { schema: { type: 'string' } } } } },
      }),
      get: operation('listVideos', 'Videos, newest first (a key sees its own; admin all)', guarded('read', 400), {
        parameters: [
          query('limit', 'page size (1-100, default 20)', { type: 'integer', minimum: 1, maximum: 100 }),
          query('cursor', "the previous page's nextCursor", { type: 'string' }),
          query('status', 'only videos in this status', ref('VideoStatus')),
        ],
        responses: { '200': json('a page of videos', ref('VideoPage')) },
      }),
    },
    '/videos/{id}': {
      get: operation('getVideo', 'A video: status, progress with ETA, source metadata, top classes', videoRead, {
        parameters: [idParameter()],
        responses: { '200': json('the video', ref('Video')) },
      }),
      delete: operation('deleteVideo', 'Deletes a video: stops its extraction and detection, removes its jobs, files and rows', guarded('upload', 400, 404), {
        description:
          "The uploading key's own videos (admin: any), in any status. An unfinished video is cancelled first, so no worker writes to it again and its extraction stops within a second in whichever worker runs it; then its queued and dead-lettered jobs, its source, preview and frames, and its rows (frames, detections) are removed. 204 when done; 404 for a video that does not exist, including one already deleted (a client that retries a DELETE treats 404 as done). Safe to repeat: a DELETE that failed half-way (503) leaves the video in place, cancelled, to be deleted again.",
        parameters: [idParameter()],
        responses: { '204': { description: 'deleted, with everything it had' } },
      }),
    },
    '/videos/{id}/cancel': {
      post: operation('cancelVideo', 'Cancels a queued, extracting or processing video; its results so far stay', guarded('upload', 400, 404, 409), {
        description:
          "The uploading key's own videos (admin: any). The status becomes cancelled: extraction stops, queued jobs and unprocessed frames are discarded, and frames recorded before stay readable (jobs workers hold at that moment commit nothing). The source and preview stay (KEEP_SOURCE_VIDEO=false deletes the source). Cancelling a cancelled video again answers 200 with it; a completed or failed one is 409 video_finished.",
        parameters: [idParameter()],
        responses: { '200': json('the video, now cancelled', ref('Video')) },
      }),
    },
    '/videos/{id}/events': {
      get: operation('videoEvents', 'Live progress (Server-Sent Events)', videoRead, {
        description:
          '`event: progress` (data: Progress) at once and whenever status or counts change (at most ~4 per second); `: ping` every 15 s; after completed, failed or cancelled one last progress event, then `event: end` and the stream closes.',
        parameters: [idParameter()],
        responses: { '200': { description: 'an event stream whose progress events carry Progress', content: { 'text/event-stream': { schema: { type: 'string' }, 'x-event-data': ref('Progress') } } } },
      }),
    },
    '/videos/{id}/detections': {
      get: operation('listDetections', 'Detections per frame, paginated (boxes in source pixels)', guarded('read', 400, 404), {
        parameters: [
          idParameter(),
          query('limit', 'frames per page (1-1000, default 100)', { type: 'integer', minimum: 1, maximum: 1000 }),
          query('cursor', "the previous page's nextCursor", { type: 'integer' }),
          query('class', 'only frames with detections of this class, and only those detections', { type: 'string' }),
          query('minConfidence', 'only detections at least this confident', { type: 'number', minimum: 0, maximum: 1 }),
        ],
        responses: { '200': json('a page of frames', ref('FramesPage')) },
      }),
    },
    '/videos/{id}/detections/export': {
      get: operation('exportDetections', 'Every detection of a video as a CSV or JSON download (streamed)', guarded('read', 400, 404), {
        parameters: [idParameter(), query('format', 'csv (default) or json', { type: 'string', enum: ['csv', 'json'] })],
        responses: {
          '200': {
            description: 'Content-Disposition: attachment; filename="<id>-detections.<format>". CSV columns frame_index,pts_ms,captured_at,class_id,class_name,confidence,x1,y1,x2,y2',
            content: { 'text/csv': { schema: { type: 'string' } }, 'application/json': { schema: { type: 'array', items: ref('ExportedDetection') } } },
          },
        },
      }),
    },
    '/videos/{id}/preview': {
      get: operation('videoPreview', 'The browser-playable preview (H.264 MP4 or VP9 WebM, at most 720p, no audio), in byte ranges', guarded('read', 404), {
        description: 'Accept-Ranges: bytes. One range (bytes=a-b, a-, -n) gets 206 with Content-Range; several ranges get the whole file. 404 while the preview does not exist (yet), or when it could not be made.',
        parameters: [idParameter(), { name: 'Range', in: 'header', required: false, description: 'one byte range', schema: { type: 'string', examples: ['bytes=0-'] } }],
        responses: {
          '200': { description: 'the whole preview', content: { 'video/mp4': { schema: { type: 'string', format: 'binary' } }, 'video/webm': { schema: { type: 'string', format: 'binary' } } } },
          '206': { description: 'the requested range (Content-Range: bytes a-b/size)', content: { 'video/mp4': { schema: { type: 'string', format: 'binary' } }, 'video/webm': { schema: { type: 'string', format: 'binary' } } } },
          '416': json('the range starts past the end or is malformed (Content-Range: bytes */size)', ref('Error')),
        },
      }),
    },
    '/videos/{id}/summary': {
      get: operation('videoSummary', "Detections per class, and per class per time bucket of the video's offset", guarded('read', 400, 404), {
        parameters: [idParameter(), query('bucket', 'bucket size in seconds (1-3600, default 10)', { type: 'integer', minimum: 1, maximum: 3600 })],
        responses: { '200': json('counts; buckets without detections are absent', ref('Summary')) },
      }),
    },
    '/analytics/counts': {
      get: operation('analyticsCounts', 'Detections per class per calendar bucket of captured_at, in a time zone', guarded('read', 400), {
        parameters: [
          query('class', 'one class (default: all)', { type: 'string' }),
          query('from', 'start, ISO 8601 with a zone (default: 24 h before to)', dateTime),
          query('to', 'end, exclusive (default: now)', dateTime),
          query('bucket', '1m, 1h (default) or 1d', { type: 'string', enum: ['1m', '1h', '1d'] }),
          query('tz', 'IANA time zone (default UTC); days and hours follow its DST changes', { type: 'string' }),
        ],
        responses: { '200': json("counts over the key's videos (admin: all)", ref('AnalyticsCounts')) },
      }),
    },
    '/admin/keys': {
      post: operation('createKey', 'Create an API key (shown once)', guarded('admin', 400), {
        requestBody: { required: true, content: { 'application/json': { schema: ref('NewApiKey') } } },
        responses: { '201': json('the new key', ref('CreatedApiKey')) },
      }),
      get: operation('listKeys', 'Keys not revoked', guarded('admin'), { responses: { '200': json('keys', ref('ApiKeyList')) } }),
    },
    '/admin/keys/{id}': {
      delete: operation('revokeKey', 'Revoke a key (its sessions end with it)', guarded('admin', 404), {
        parameters: [idParameter('id', 'key id')],
        responses: { '204': { description: 'revoked' } },
      }),
    },
    '/admin/dead-letters': {
      get: operation('listDeadLetters', 'Dead-lettered jobs, newest first', guarded('admin', 400), {
        parameters: [query('offset', 'default 0', { type: 'integer', minimum: 0 }), query('limit', '1-1000, default 100', { type: 'integer', minimum: 1, maximum: 1000 })],
        responses: { '200': json('dead letters', ref('DeadLetterList')) },
      }),
    },
    '/admin/dead-letters/{jobId}/retry': {
      post: operation('retryDeadLetter', 'Queue a dead letter again (attempts reset)', guarded('admin', 404), {
        parameters: [idParameter('jobId', 'job id')],
        responses: { '202': json('requeued', ref('Requeued')) },
      }),
    },
    '/admin/dead-letters/{jobId}': {
      delete: operation('discardDeadLetter', 'Drop a dead letter', guarded('admin', 404), {
        parameters: [idParameter('jobId', 'job id')],
        responses: { '204': { description: 'dropped' } },
      }),
    },
  } as Record<string, Record<string, ReturnType<typeof operation>>>,
  components: {
    securitySchemes: {
      bearerKey: { type: 'http', scheme: 'bearer', description: 'an API key: Authorization: Bearer <key>' },
      sessionCookie: { type: 'apiKey', in: 'cookie', name: 'vidsense_session', description: 'the web session from POST /auth/session' },
    },
    schemas,
  },
};

// Docker HEALTHCHECK without curl in the image: healthy when this container's /readyz answers 200.
// The API serves it on PORT; a worker on WORKER_HEALTH_PORT (set in the worker images).
const port = process.env.WORKER_HEALTH_PORT || process.env.PORT || '3000';
try {
  const response = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(4000) });
  process.exit(response.ok ? 0 : 1);
} catch {
  process.exit(1);
}

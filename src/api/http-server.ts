import http, { STATUS_CODES, type RequestListener, type Server } from 'node:http';
import type { Socket } from 'node:net';

export interface HttpTimeouts {
  /** A request's headers must arrive within this. */
  headersTimeoutMs: number;
  /**
   * A request's body must arrive within this. The upload guard answers it first, precisely and with
   * the staged file removed; Node's own check is a backstop a little later, for any other request.
   */
  requestTimeoutMs: number;
}

/** Node's own requestTimeout comes this long after the upload guard's, so the guard answers first. */
const BACKSTOP_MS = 5_000;

/**
 * An HTTP server that does not wait for ever on a client: headers and the whole request have deadlines
 * (Node's defaults are 60 s for headers and none, since we had set 0, for the request). Connections are
 * checked every second (Node's default 30 s would let a header deadline slip by up to that much).
 * What Node refuses before any route sees the request (a header deadline, a malformed request) is
 * answered in the API's JSON error shape.
 */
export function createHttpServer(app: RequestListener, timeouts?: HttpTimeouts): Server {
  const server = timeouts
    ? http.createServer(
        {
          headersTimeout: timeouts.headersTimeoutMs,
          requestTimeout: timeouts.requestTimeoutMs + BACKSTOP_MS,
          connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(timeouts.headersTimeoutMs / 4))),
        },
        app,
      )
    : http.createServer(app);
  server.on('clientError', answerClientError);
  return server;
}

/** Binds the server; a port already taken (or any other bind error) rejects with a message naming it. */
export function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      server.off('listening', onListening);
      const why = error.code === 'EADDRINUSE' ? 'the port is already in use' : error.code === 'EACCES' ? 'permission denied' : error.message;
      reject(new Error(`cannot listen on ${host}:${port} (PORT ${port}): ${why}${error.code ? ` (${error.code})` : ''}`, { cause: error }));
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(port, host);
  });
}

/** Node's 'clientError': answer with a JSON error when no response has begun, else just drop the connection. */
export function answerClientError(error: NodeJS.ErrnoException, socket: Socket): void {
  const inProgress = (socket as Socket & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
  if (error.code === 'ECONNRESET' || !socket.writable || inProgress?.headersSent) {
    socket.destroy();
    return;
  }
  const [status, code, message] =
    error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, 'request_timeout', 'the request did not arrive in time']
      : error.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'headers_too_large', 'the request headers are too large']
        : [400, 'bad_request', 'the HTTP request is malformed'];
  socket.end(rawJsonResponse(status, { error: { code, message } }, status === 408 ? { 'Retry-After': '1' } : {}));
}

function rawJsonResponse(status: number, body: unknown, headers: Record<string, string>): string {
  const json = JSON.stringify(body);
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}`,
    'Content-Type: application/json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(json)}`,
    'Connection: close',
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
  ];
  return `${lines.join('\r\n')}\r\n\r\n${json}`;
}

/**
 * HTTP over a bare TCP socket, for tests of clients that misbehave: headers that never end, bodies that
 * stop or trickle. fetch cannot send like that, and hides when the server closed the connection.
 */
import net from 'node:net';
import { TEST_API_KEY } from './api-client.ts';

export interface RawResponse {
  /** 0 when the server closed the connection without answering. */
  status: number;
  headers: Record<string, string>;
  body: string;
  /** Milliseconds from connecting to the server closing the connection. */
  closedAfterMs: number;
}

export class RawClient {
  private readonly chunks: Buffer[] = [];
  private readonly closed: Promise<number>;
  private trickleTimer: NodeJS.Timeout | undefined;
  private readonly started = performance.now();

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => this.chunks.push(chunk));
    // Writes after the server closed fail with EPIPE/ECONNRESET: the answer already read is what counts.
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) => socket.once('close', () => resolve(performance.now() - this.started)));
  }

  /** Connects from `localAddress` when given (any 127.x.y.z is another client address on loopback). */
  static connect(port: number, localAddress?: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port, ...(localAddress ? { localAddress } : {}) });
      socket.once('connect', () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  write(data: string | Buffer): void {
    if (!this.socket.destroyed) this.socket.write(data);
  }

  /** Sends `byte` every intervalMs until the connection closes (or stopTrickle). */
  trickle(intervalMs: number, byte = 'x'): void {
    this.trickleTimer = setInterval(() => this.write(byte), intervalMs);
    void this.closed.then(() => this.stopTrickle());
  }

  stopTrickle(): void {
    clearInterval(this.trickleTimer);
  }

  /** Waits for the server to close the connection, then parses what it sent. */
  async response(): Promise<RawResponse> {
    const closedAfterMs = await this.closed;
    return { ...parseResponse(Buffer.concat(this.chunks).toString('utf8')), closedAfterMs };
  }

  /** What the server sent so far, parsed (status 0 while nothing has come). */
  received(): Omit<RawResponse, 'closedAfterMs'> {
    return parseResponse(Buffer.concat(this.chunks).toString('utf8'));
  }

  destroy(): void {
    this.stopTrickle();
    this.socket.destroy();
  }
}

function parseResponse(text: string): Omit<RawResponse, 'closedAfterMs'> {
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return { status: 0, headers: {}, body: text };
  const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine ?? '')?.[1] ?? 0), headers, body: text.slice(end + 4) };
}

/**
 * The start of a POST /videos multipart request: headers (with the test API key and the declared
 * `contentLength` of the whole body) and the body up to where the file's bytes begin.
 */
export function uploadHead(boundary: string, contentLength: number, fileName = 'clip.mp4'): string {
  return (
    `POST /videos HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TEST_API_KEY}\r\n` +
    `Content-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: ${contentLength}\r\n\r\n` +
    `--${boundary}\r\nContent-Disposition: form-data; name="video"; filename="${fileName}"\r\nContent-Type: video/mp4\r\n\r\n`
  );
}

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 's3rver-process.cjs');

/** s3rver's fixed credentials: it checks request signatures against these. */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

/**
 * A private S3-compatible server (s3rver, in its own process) on a free 127.0.0.1 port, storing in a
 * temporary directory that stop() removes. See s3rver-process.cjs for why it runs apart.
 */
export class TestS3Server {
  private constructor(
    private readonly child: ChildProcess,
    private readonly exited: Promise<void>,
    readonly directory: string,
    readonly bucket: string,
    readonly endpoint: string,
  ) {}

  static async start(bucket = 'vidsense-test'): Promise<TestS3Server> {
    const directory = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-s3-'));
    const child = spawn(process.execPath, ['--openssl-legacy-provider', script, directory, bucket], {
      // stdin stays open: the server exits when it closes, so it never outlives the test process.
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    try {
      const port = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('s3rver did not start within 15 s')), 15_000);
        createInterface({ input: child.stdout! }).once('line', (line) => {
          clearTimeout(timer);
          resolve((JSON.parse(line) as { port: number }).port);
        });
        void exited.then(() => reject(new Error(`s3rver exited before listening: ${stderr}`)));
      });
      return new TestS3Server(child, exited, directory, bucket, `http://127.0.0.1:${port}`);
    } catch (error) {
      child.kill('SIGKILL');
      await fs.rm(directory, { recursive: true, force: true });
      throw error;
    }
  }

  /** The service's environment for this server (credentials through the AWS SDK's own variables). */
  env(prefix: string): Record<string, string> {
    return {
      STORAGE_DRIVER: 's3',
      S3_BUCKET: this.bucket,
      S3_ENDPOINT: this.endpoint,
      S3_FORCE_PATH_STYLE: 'true',
      S3_PREFIX: prefix,
      AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    };
  }

  /** Options for an S3Storage on this server. */
  storageOptions(prefix: string) {
    return { bucket: this.bucket, region: 'us-east-1', endpoint: this.endpoint, forcePathStyle: true, prefix, credentials: S3RVER_CREDENTIALS };
  }

  /** Every object stored in the bucket, whatever its key (read from s3rver's directory, not through S3). */
  async objectCount(): Promise<number> {
    const entries = await fs.readdir(path.join(this.directory, this.bucket), { recursive: true });
    return entries.filter((name) => name.endsWith('._S3rver_object')).length;
  }

  /**
   * Multipart uploads begun in the bucket (s3rver keeps a directory for their parts once the first one
   * starts) and those still open (neither completed nor aborted).
   */
  async multipartUploads(): Promise<{ everStarted: boolean; open: number }> {
    try {
      const open = await fs.readdir(path.join(this.directory, this.bucket, '._S3rver_uploads'));
      return { everStarted: true, open: open.length };
    } catch {
      return { everStarted: false, open: 0 };
    }
  }

  async stop(): Promise<void> {
    this.child.stdin?.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
    await this.exited;
    clearTimeout(timer);
    await fs.rm(this.directory, { recursive: true, force: true });
  }
}

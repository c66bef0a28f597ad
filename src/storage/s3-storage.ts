import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  type HeadObjectCommandOutput,
  ListObjectsV2Command,
  NotFound,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Readable } from 'node:stream';
import { assertByteRange, assertSafeKey, type ByteRange, type StorageSpace, type VideoStorage } from './video-storage.ts';

export interface S3StorageOptions {
  bucket: string;
  region: string;
  /** An S3-compatible endpoint (MinIO, R2, a test server); undefined means AWS itself. */
  endpoint?: string;
  /** Path-style URLs (endpoint/bucket/key), which most S3-compatible stores need. */
  forcePathStyle?: boolean;
  /** Key prefix inside the bucket ('' or '/'-separated names); every key this adapter touches is under it. */
  prefix?: string;
  /** Explicit credentials (tests); unset means the AWS SDK's default provider chain. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Multipart part size; S3's minimum (and the default) is 5 MiB. */
  partSizeBytes?: number;
  /** Parts uploaded at once by one upload; memory held is about partSizeBytes × (queueSize + 1). */
  uploadConcurrency?: number;
}

/** DeleteObjects takes at most 1000 keys, and ListObjectsV2 returns at most 1000 per page. */
const PAGE = 1000;
const MIN_PART_BYTES = 5 * 1024 * 1024;

/**
 * VideoStorage on an S3 bucket (or an S3-compatible store). The only file that imports the AWS SDK.
 * Keys are validated with assertSafeKey and joined under the adapter's prefix, so no key reaches outside it.
 */
export class S3Storage implements VideoStorage, StorageSpace {
  readonly driver = 's3';
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly partSize: number;
  private readonly queueSize: number;

  constructor(options: S3StorageOptions) {
    const prefix = (options.prefix ?? '').replace(/^\/+|\/+$/g, '');
    if (prefix !== '') assertSafeKey(prefix);
    this.bucket = options.bucket;
    this.prefix = prefix;
    this.partSize = Math.max(MIN_PART_BYTES, options.partSizeBytes ?? MIN_PART_BYTES);
    this.queueSize = Math.max(1, options.uploadConcurrency ?? 4);
    // Only what is set is passed, so the SDK's own defaults and environment (AWS_* variables, profiles,
    // instance roles) apply to everything else.
    const config: S3ClientConfig = { region: options.region };
    if (options.endpoint !== undefined) config.endpoint = options.endpoint;
    if (options.forcePathStyle) config.forcePathStyle = true;
    if (options.credentials !== undefined) config.credentials = options.credentials;
    this.client = new S3Client(config);
  }

  /**
   * Streams data up as a multipart upload (parts of partSize bytes; a body smaller than one part is one
   * PutObject), so a video is never held in memory whole. A failed upload is aborted, so S3 keeps no parts.
   */
  async writeStream(key: string, data: Readable): Promise<{ bytes: number }> {
    const objectKey = this.objectKey(key);
    let bytes = 0;
    const counted = Readable.from(
      (async function* () {
        for await (const chunk of data as AsyncIterable<Buffer>) {
          bytes += chunk.length;
          yield chunk;
        }
      })(),
      { objectMode: false },
    );
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: objectKey, Body: counted },
      partSize: this.partSize,
      queueSize: this.queueSize,
      leavePartsOnError: false,
    });
    try {
      await upload.done();
    } catch (error) {
      data.destroy();
      counted.destroy();
      throw error;
    }
    return { bytes };
  }

  async write(key: string, data: Buffer): Promise<void> {
    await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key), Body: data }));
  }

  async read(key: string): Promise<Buffer> {
    const response = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
    if (!response.Body) throw new Error(`S3 returned no body for ${key}`);
    return Buffer.from(await response.Body.transformToByteArray());
  }

  async createReadStream(key: string, range?: ByteRange): Promise<Readable> {
    const objectKey = this.objectKey(key);
    if (range) assertByteRange(range);
    const response = await this.client.send(
      new GetObjectCommand({ Bucket: this.bucket, Key: objectKey, Range: range && `bytes=${range.start}-${range.end}` }),
    );
    if (!(response.Body instanceof Readable)) throw new Error(`S3 returned no stream for ${key}`);
    return response.Body;
  }

  async exists(key: string): Promise<boolean> {
    return (await this.head(key)) !== undefined;
  }

  async size(key: string): Promise<number | undefined> {
    const head = await this.head(key);
    if (head === undefined) return undefined;
    if (head.ContentLength === undefined) throw new Error(`S3 returned no size for ${key}`);
    return head.ContentLength;
  }

  /** Objects in S3 are not files: ffmpeg gets a downloaded copy instead (see IngestService). */
  localPath(key: string): undefined {
    assertSafeKey(key);
    return undefined;
  }

  async delete(keys: string[]): Promise<void> {
    const objectKeys = keys.map((key) => this.objectKey(key));
    for (let start = 0; start < objectKeys.length; start += PAGE) await this.deleteObjects(objectKeys.slice(start, start + PAGE));
  }

  async deletePrefix(prefix: string): Promise<void> {
    const listPrefix = `${this.objectKey(prefix)}/`;
    // Always list from the start: what was deleted is gone, so each page is the next up to 1000 keys.
    for (;;) {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: listPrefix, MaxKeys: PAGE }));
      const keys = (page.Contents ?? []).flatMap((object) => (object.Key === undefined ? [] : [object.Key]));
      if (keys.length > 0) await this.deleteObjects(keys);
      if (!page.IsTruncated || keys.length === 0) return;
    }
  }

  /** Keys under prefix, relative to the adapter's prefix (as LocalStorage returns them), sorted. */
  async list(prefix: string): Promise<string[]> {
    const listPrefix = `${this.objectKey(prefix)}/`;
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: listPrefix, MaxKeys: PAGE, ContinuationToken: token }),
      );
      for (const object of page.Contents ?? []) if (object.Key !== undefined) keys.push(this.relativeKey(object.Key));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    return keys.sort();
  }

  /** Releases the client's sockets (tests, shutdown). */
  close(): void {
    this.client.destroy();
  }

  /** HeadObject's answer, or undefined when the key is not there. */
  private async head(key: string): Promise<HeadObjectCommandOutput | undefined> {
    try {
      return await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
    } catch (error) {
      if (error instanceof NotFound || (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return undefined;
      throw error;
    }
  }

  private async deleteObjects(objectKeys: string[]): Promise<void> {
    if (objectKeys.length === 0) return;
    const response = await this.client.send(
      new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: objectKeys.map((Key) => ({ Key })), Quiet: true } }),
    );
    const failed = response.Errors ?? [];
    if (failed.length > 0) {
      const first = failed[0]!;
      throw new Error(`S3 could not delete ${failed.length} object(s), e.g. ${first.Key}: ${first.Code} ${first.Message}`);
    }
  }

  private objectKey(key: string): string {
    assertSafeKey(key);
    return this.prefix === '' ? key : `${this.prefix}/${key}`;
  }

  private relativeKey(objectKey: string): string {
    return this.prefix === '' ? objectKey : objectKey.slice(this.prefix.length + 1);
  }

  /** A bucket has no free-space figure this service could act on. */
  async freeBytes(): Promise<undefined> {
    return undefined;
  }

  /** Multipart uploads are aborted when they fail, and a killed process's ones expire with the bucket's lifecycle rule: nothing to sweep here. */
  async sweepStalePartials(_olderThanMs: number): Promise<{ removed: number; young: number }> {
    return { removed: 0, young: 0 };
  }

}

// A fake S3 server for the tests (s3rver), run in its own process by test/helpers/s3-server.ts.
// Usage: node --openssl-legacy-provider s3rver-process.cjs <directory> <bucket> [address]
// Prints one JSON line {"port": N} once it listens on the address (default 127.0.0.1; a multi-host test gives
// its stores host's); exits when its stdin closes.
//
// Two gaps of s3rver 3.7 on Node >= 17 are filled here, because the storage adapter relies on both:
// - ListObjectsV2 continuation tokens are DES-encrypted, which OpenSSL 3 has only in its legacy
//   provider: hence --openssl-legacy-provider (without it every truncated listing is a 500).
// - AbortMultipartUpload is not implemented (405): the middleware below removes the upload's parts.
'use strict';

const fs = require('node:fs/promises');
const path = require('node:path');
const S3rver = require('s3rver');

const [directory, bucket, address = '127.0.0.1'] = process.argv.slice(2);
if (!directory || !bucket) {
  process.stderr.write('usage: s3rver-process.cjs <directory> <bucket> [address]\n');
  process.exit(2);
}

const server = new S3rver({ address, port: 0, directory, silent: true, configureBuckets: [{ name: bucket }] });

// DELETE /<bucket>/<key>?uploadId=<id> (path-style requests only, which the tests use).
server.middleware.unshift(async (ctx, next) => {
  if (ctx.method !== 'DELETE' || typeof ctx.query.uploadId !== 'string') return next();
  const uploadId = ctx.query.uploadId;
  const bucketName = ctx.path.split('/')[1];
  if (!/^[0-9a-f]+$/.test(uploadId) || !bucketName) {
    ctx.status = 400;
    return;
  }
  const uploadDir = path.join(server.store.getResourcePath(bucketName, undefined, 'uploads'), uploadId);
  try {
    await fs.access(uploadDir);
  } catch {
    ctx.status = 404;
    ctx.type = 'application/xml';
    ctx.body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist.</Message></Error>';
    return;
  }
  await fs.rm(uploadDir, { recursive: true, force: true });
  ctx.status = 204;
});

server.run().then(
  (address) => {
    process.stdout.write(`${JSON.stringify({ port: address.port })}\n`);
  },
  (error) => {
    process.stderr.write(`s3rver failed to start: ${error.stack || error}\n`);
    process.exit(1);
  },
);

// Nothing to flush: every request's data is on disk by the time it is answered.
const stop = () => process.exit(0);
process.stdin.on('end', stop);
process.stdin.resume();
process.on('SIGTERM', stop);

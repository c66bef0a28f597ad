import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import express, { type ErrorRequestHandler } from 'express';
import type { Readable } from 'node:stream';
import { uploadAdmission } from '../../../src/api/upload-admission.ts';
import { uploadMiddleware } from '../../../src/api/upload.ts';
import type { UploadService } from '../../../src/services/upload.service.ts';

describe('upload middleware', () => {
  it('answers a failed file stream only after the staging deleted what it wrote', async () => {
    const events: string[] = [];
    // A staging like the storage's on a full disk: the write fails, the source stream is destroyed with the
    // error (as stream.pipeline does), then the clean-up takes a while before the staging rejects.
    const uploads = {
      async stageUpload(_name: string, data: Readable) {
        const failure = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
        // Fails at the first chunk, with most of the body still to come.
        await new Promise((resolve) => data.once('data', resolve));
        data.destroy(failure);
        await delay(150);
        events.push('cleaned up');
        throw failure;
      },
      async discardStaged() {},
    } as unknown as UploadService;
    const app = express();
    const settings = { maxConcurrentUploads: 4, maxUploadsPerClient: 4, requestTimeoutMs: 60_000, idleTimeoutMs: 60_000, minFreeBytes: 0 };
    app.post('/videos', uploadAdmission(settings, { freeBytes: async () => undefined }), ...uploadMiddleware(uploads, 1024 ** 3), (_req, res) => {
      res.status(202).end();
    });
    const answer: ErrorRequestHandler = (error: Error, _req, res, _next) => {
      events.push('answered');
      res.status(507).json({ error: { code: 'insufficient_storage', message: error.message } });
    };
    app.use(answer);
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    try {
      const form = new FormData();
      form.append('video', new Blob([Buffer.alloc(16 * 1024 * 1024)]), 'clip.mp4');
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/videos`, { method: 'POST', body: form });
      assert.equal(res.status, 507);
      assert.deepEqual(events, ['cleaned up', 'answered'], 'the clean-up finished before the answer');
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

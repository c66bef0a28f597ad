import assert from 'node:assert/strict';
import multer from 'multer';
import { toAppError } from '../../../src/api/error-handler.ts';
import { errors } from '../../../src/errors/app-error.ts';
import { StorageKeyError } from '../../../src/storage/video-storage.ts';

describe('toAppError', () => {
  it('passes AppErrors through', () => {
    const error = errors.badRequest('x', 'y');
    assert.equal(toAppError(error, 10), error);
  });
  it('maps multer limits and unexpected fields', () => {
    assert.deepEqual(pick(toAppError(new multer.MulterError('LIMIT_FILE_SIZE', 'video'), 10)), [413, 'file_too_large']);
    assert.deepEqual(pick(toAppError(new multer.MulterError('LIMIT_UNEXPECTED_FILE', 'file'), 10)), [400, 'unexpected_field']);
    assert.deepEqual(pick(toAppError(new multer.MulterError('LIMIT_PART_COUNT'), 10)), [400, 'invalid_multipart']);
  });
  it('maps storage key errors and malformed multipart bodies to 400', () => {
    assert.deepEqual(pick(toAppError(new StorageKeyError('../x'), 10)), [400, 'invalid_key']);
    assert.deepEqual(pick(toAppError(new Error('Unexpected end of form'), 10)), [400, 'invalid_multipart']);
  });
  it('maps an unreachable database to 503', () => {
    assert.deepEqual(pick(toAppError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), 10)), [503, 'service_unavailable']);
  });
  it('maps a full disk (ENOSPC, EDQUOT) to 507 insufficient_storage with Retry-After, without the path in the message', () => {
    for (const code of ['ENOSPC', 'EDQUOT']) {
      const error = toAppError(Object.assign(new Error(`${code}: no space left on device, write '/srv/storage/videos/x/source.partial-1-2'`), { code }), 10);
      assert.deepEqual(pick(error), [507, 'insufficient_storage']);
      assert.doesNotMatch(error!.message, /\/srv/);
      assert.equal(error!.retryAfterS, 60);
    }
  });
  it('leaves unknown errors to the 500 path', () => {
    assert.equal(toAppError(new TypeError('bug'), 10), undefined);
  });
});

function pick(error: ReturnType<typeof toAppError>) {
  return error ? [error.status, error.code] : undefined;
}

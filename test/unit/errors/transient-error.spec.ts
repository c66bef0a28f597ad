import assert from 'node:assert/strict';
import { ClientClosedError, SocketClosedUnexpectedlyError } from 'redis';
import { isTransientError } from '../../../src/errors/transient-error.ts';

describe('isTransientError', () => {
  it('recognises lost connections to PostgreSQL (postgres.js codes and SQLSTATEs)', () => {
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'CONNECTION_CLOSED', 'CONNECTION_DESTROYED', 'CONNECT_TIMEOUT', '57P01', '08006']) {
      assert.equal(isTransientError(Object.assign(new Error(code), { code })), true, code);
    }
  });
  it('recognises node-redis socket errors by class, whose name stays "Error"', () => {
    assert.equal(isTransientError(new SocketClosedUnexpectedlyError()), true);
    assert.equal(isTransientError(new ClientClosedError()), true);
  });
  it('does not retry-forever on errors that belong to the job', () => {
    assert.equal(isTransientError(Object.assign(new Error('no such file'), { code: 'ENOENT' })), false);
    assert.equal(isTransientError(Object.assign(new Error('syntax'), { code: '42601' })), false);
    assert.equal(isTransientError(new TypeError('bug')), false);
    assert.equal(isTransientError('not an error'), false);
  });
});

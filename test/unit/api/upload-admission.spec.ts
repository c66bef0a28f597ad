import assert from 'node:assert/strict';
import { UploadSlots } from '../../../src/api/upload-admission.ts';

describe('UploadSlots', () => {
  it('caps uploads per client address, then in all; a release frees exactly one slot', () => {
    const slots = new UploadSlots(3, 2);
    assert.equal(slots.take('10.0.0.1'), 'taken');
    assert.equal(slots.take('10.0.0.1'), 'taken');
    assert.equal(slots.take('10.0.0.1'), 'client_busy');
    assert.equal(slots.take('10.0.0.2'), 'taken');
    assert.equal(slots.take('10.0.0.3'), 'server_busy');
    assert.equal(slots.inProgress, 3);
    slots.release('10.0.0.1');
    assert.equal(slots.take('10.0.0.3'), 'taken');
    assert.equal(slots.take('10.0.0.1'), 'server_busy', 'a client under its own cap still meets the global one');
  });

  it('tells a client at its own cap that it is the one to wait, even when the server is full', () => {
    const slots = new UploadSlots(2, 2);
    slots.take('a');
    slots.take('a');
    assert.equal(slots.take('a'), 'client_busy');
  });

  it('ignores a release without a take', () => {
    const slots = new UploadSlots(1, 1);
    slots.release('nobody');
    assert.equal(slots.inProgress, 0);
    assert.equal(slots.take('a'), 'taken');
  });
});

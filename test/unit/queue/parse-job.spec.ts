import assert from 'node:assert/strict';
import { parseJob } from '../../../src/queue/parse-job.ts';

describe('parseJob', () => {
  const valid = { id: 'j1', videoId: 'v1', frames: [{ index: 0, ptsMs: 0, key: 'videos/v1/frames/0.jpg' }], publishedAt: 1_700_000_000_000 };

  it('accepts a well-formed job and returns it unchanged', () => {
    const result = parseJob(JSON.stringify(valid));
    assert.deepEqual(result, { ok: true, job: valid });
    assert.equal(parseJob(JSON.stringify({ ...valid, publishedAt: undefined })).ok, true, 'publishedAt is optional');
  });

  it('accepts extract jobs (no frames) and detect jobs with or without their kind', () => {
    const extract = { kind: 'extract', id: 'extract:v1', videoId: 'v1', publishedAt: 1 };
    assert.deepEqual(parseJob(JSON.stringify(extract)), { ok: true, job: extract });
    assert.equal(parseJob(JSON.stringify({ ...valid, kind: 'detect' })).ok, true);
  });

  const malformed: [string, string][] = [
    ['an unknown kind', JSON.stringify({ ...valid, kind: 'transcode' })],
    ['a detect job without frames', JSON.stringify({ kind: 'detect', id: 'j', videoId: 'v' })],
    ['an extract job with a bad attempts', JSON.stringify({ kind: 'extract', id: 'j', videoId: 'v', attempts: -1 })],
    ['not JSON', '{oops'],
    ['JSON null', 'null'],
    ['a string', '"job"'],
    ['missing id', JSON.stringify({ ...valid, id: undefined })],
    ['numeric videoId', JSON.stringify({ ...valid, videoId: 7 })],
    ['no frames', JSON.stringify({ ...valid, frames: [] })],
    ['frames not an array', JSON.stringify({ ...valid, frames: 'x' })],
    ['null frame', JSON.stringify({ ...valid, frames: [null] })],
    ['negative index', JSON.stringify({ ...valid, frames: [{ index: -1, ptsMs: 0, key: 'k' }] })],
    ['fractional index', JSON.stringify({ ...valid, frames: [{ index: 1.5, ptsMs: 0, key: 'k' }] })],
    ['missing key', JSON.stringify({ ...valid, frames: [{ index: 0, ptsMs: 0 }] })],
    ['string ptsMs', JSON.stringify({ ...valid, frames: [{ index: 0, ptsMs: '0', key: 'k' }] })],
    ['string publishedAt', JSON.stringify({ ...valid, publishedAt: 'now' })],
  ];
  for (const [what, payload] of malformed) {
    it(`rejects ${what} with a reason instead of throwing`, () => {
      const result = parseJob(payload);
      assert.equal(result.ok, false);
      assert.ok(!result.ok && result.reason.length > 0);
    });
  }
});

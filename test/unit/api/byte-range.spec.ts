import assert from 'node:assert/strict';
import { parseRange } from '../../../src/api/byte-range.ts';

describe('parseRange (HTTP Range header against an object of 1000 bytes)', () => {
  const parse = (header: string | undefined) => parseRange(header, 1000);

  it('serves the whole object without a bytes range: none, another unit, or several ranges', () => {
    for (const header of [undefined, '', '  ', 'items=0-5', 'bytes=0-1,5-9']) assert.deepEqual(parse(header), { kind: 'full' }, String(header));
  });

  it('reads bounded, open-ended and suffix ranges, clamping the end to the object', () => {
    assert.deepEqual(parse('bytes=0-0'), { kind: 'partial', start: 0, end: 0 });
    assert.deepEqual(parse('bytes=0-1'), { kind: 'partial', start: 0, end: 1 });
    assert.deepEqual(parse('bytes=0-'), { kind: 'partial', start: 0, end: 999 });
    assert.deepEqual(parse('bytes=500-'), { kind: 'partial', start: 500, end: 999 });
    assert.deepEqual(parse('bytes=999-999'), { kind: 'partial', start: 999, end: 999 });
    assert.deepEqual(parse('bytes=900-5000'), { kind: 'partial', start: 900, end: 999 });
    assert.deepEqual(parse('bytes=-100'), { kind: 'partial', start: 900, end: 999 });
    assert.deepEqual(parse('bytes=-5000'), { kind: 'partial', start: 0, end: 999 });
    assert.deepEqual(parse('Bytes= 10-20 '), { kind: 'partial', start: 10, end: 20 });
    assert.deepEqual(parse('bytes=0-99999999999999999999'), { kind: 'partial', start: 0, end: 999 });
  });

  it('refuses ranges past the end, reversed, empty or malformed (416)', () => {
    for (const header of ['bytes=1000-', 'bytes=1000-1001', 'bytes=5-4', 'bytes=-0', 'bytes=-', 'bytes=', 'bytes=abc', 'bytes=1-2-3', 'bytes=-1-2', 'bytes=0x10-']) {
      assert.deepEqual(parse(header), { kind: 'unsatisfiable' }, header);
    }
  });

  it('finds nothing satisfiable in an empty object', () => {
    assert.deepEqual(parseRange('bytes=0-', 0), { kind: 'unsatisfiable' });
    assert.deepEqual(parseRange('bytes=-1', 0), { kind: 'unsatisfiable' });
    assert.deepEqual(parseRange(undefined, 0), { kind: 'full' });
  });
});

import assert from 'node:assert/strict';
import { encodeVarint, parseFields, ProtobufWireError, readVarint, rewriteMessage, WIRE_I32, WIRE_I64, WIRE_LEN, WIRE_VARINT } from '../../../src/detection/protobuf-wire.ts';

// field 1 varint 300, field 2 "hi", field 3 fixed32, field 4 fixed64
const MESSAGE = Uint8Array.from([0x08, 0xac, 0x02, 0x12, 0x02, 0x68, 0x69, 0x1d, 1, 2, 3, 4, 0x21, 1, 2, 3, 4, 5, 6, 7, 8]);

describe('protobuf wire format', () => {
  it('round-trips varints, up to 64-bit values', () => {
    for (const value of [0, 1, 127, 128, 300, 2 ** 31, 2 ** 53 - 1]) {
      const bytes = encodeVarint(value);
      assert.deepEqual(readVarint(bytes, 0, bytes.length), [BigInt(value), bytes.length]);
    }
    const max = Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    assert.equal(readVarint(max, 0, max.length)[0], 2n ** 64n - 1n);
  });

  it('walks the fields of a message with their offsets', () => {
    const fields = parseFields(MESSAGE);
    assert.deepEqual(
      fields.map((f) => [f.field, f.wire, f.start, f.tagEnd, f.valueStart, f.end]),
      [
        [1, WIRE_VARINT, 0, 1, 1, 3],
        [2, WIRE_LEN, 3, 4, 5, 7],
        [3, WIRE_I32, 7, 8, 8, 12],
        [4, WIRE_I64, 12, 13, 13, 21],
      ],
    );
  });

  it('refuses truncated varints, fields past the end, and group wire types', () => {
    assert.throws(() => parseFields(Uint8Array.from([0x08, 0x80])), ProtobufWireError);
    assert.throws(() => parseFields(MESSAGE.subarray(0, 6)), /field 2 runs past the end/);
    assert.throws(() => parseFields(Uint8Array.from([0x0b])), /unsupported protobuf wire type 3/);
    assert.throws(() => readVarint(new Uint8Array(11).fill(0x80), 0, 11), /malformed/);
  });

  it('rewrites one length-delimited field and copies every other byte', () => {
    const out = rewriteMessage(MESSAGE, 0, MESSAGE.length, (f) => (f.field === 2 ? new TextEncoder().encode('hello') : undefined));
    assert.deepEqual([...out], [0x08, 0xac, 0x02, 0x12, 0x05, ...new TextEncoder().encode('hello'), ...MESSAGE.subarray(7)]);
  });
});

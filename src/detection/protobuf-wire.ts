/**
 * The protobuf wire format, walked by hand where protobufjs cannot serve: reading a few top-level fields
 * of a large ONNX file without decoding its weights (onnx-metadata.ts), and rewriting a file in place with
 * every other byte kept as it is (onnx-batch.ts).
 */

/** The bytes are not well-formed protobuf. */
export class ProtobufWireError extends Error {
  override name = 'ProtobufWireError';
}

export const WIRE_VARINT = 0;
export const WIRE_I64 = 1;
export const WIRE_LEN = 2;
export const WIRE_I32 = 5;

/** One field of a message, by offsets into the buffer. */
export interface WireField {
  field: number;
  wire: number;
  /** Offset of the tag. */
  start: number;
  /** Offset just past the tag. */
  tagEnd: number;
  /** Offset of the value: the payload for LEN fields (past the length prefix). */
  valueStart: number;
  end: number;
}

export function readVarint(bytes: Uint8Array, pos: number, end: number): [bigint, number] {
  let result = 0n;
  let shift = 0n;
  for (let i = 0; i < 10; i++) {
    if (pos >= end) throw new ProtobufWireError('truncated protobuf varint');
    const byte = bytes[pos++]!;
    result |= BigInt(byte & 0x7f) << shift;
    if (byte < 0x80) return [result, pos];
    shift += 7n;
  }
  throw new ProtobufWireError('malformed protobuf varint');
}

export function encodeVarint(value: number): Uint8Array {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Uint8Array.from(out);
}

/** The fields of the message in bytes[start, end), in order; nested messages are left to the caller. */
export function parseFields(bytes: Uint8Array, start = 0, end = bytes.length): WireField[] {
  const fields: WireField[] = [];
  let pos = start;
  while (pos < end) {
    const fieldStart = pos;
    const [tag, tagEnd] = readVarint(bytes, pos, end);
    const field = Number(tag >> 3n);
    const wire = Number(tag & 7n);
    let valueStart = tagEnd;
    switch (wire) {
      case WIRE_VARINT:
        pos = readVarint(bytes, tagEnd, end)[1];
        break;
      case WIRE_I64:
        pos = tagEnd + 8;
        break;
      case WIRE_I32:
        pos = tagEnd + 4;
        break;
      case WIRE_LEN: {
        const [length, payloadStart] = readVarint(bytes, tagEnd, end);
        valueStart = payloadStart;
        pos = payloadStart + Number(length);
        break;
      }
      default:
        throw new ProtobufWireError(`unsupported protobuf wire type ${wire} at byte ${fieldStart}`);
    }
    if (pos > end) throw new ProtobufWireError(`protobuf field ${field} runs past the end of its message (byte ${fieldStart})`);
    fields.push({ field, wire, start: fieldStart, tagEnd, valueStart, end: pos });
  }
  return fields;
}

/** One buffer holding `chunks` back to back. */
export function concatBytes(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let pos = 0;
  for (const chunk of chunks) {
    out.set(chunk, pos);
    pos += chunk.length;
  }
  return out;
}

/**
 * Re-serializes a message: each field is copied byte for byte unless `edit` returns a new payload for
 * it (LEN fields only), which is written after the field's original tag bytes with a new length prefix.
 */
export function rewriteMessage(
  bytes: Uint8Array,
  start: number,
  end: number,
  edit: (field: WireField) => Uint8Array | undefined,
): Uint8Array {
  const chunks: Uint8Array[] = [];
  for (const f of parseFields(bytes, start, end)) {
    const payload = f.wire === WIRE_LEN ? edit(f) : undefined;
    if (payload === undefined) chunks.push(bytes.subarray(f.start, f.end));
    else chunks.push(bytes.subarray(f.start, f.tagEnd), encodeVarint(payload.length), payload);
  }
  return concatBytes(chunks);
}

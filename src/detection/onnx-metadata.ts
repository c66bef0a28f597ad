import { parseFields, ProtobufWireError, WIRE_LEN } from './protobuf-wire.ts';
import type { ModelInfo } from './types.ts';

/** Thrown when an ONNX file has no usable Ultralytics metadata (names, imgsz, stride). */
export class ModelMetadataError extends Error {
  override name = 'ModelMetadataError';
}

// ModelProto field numbers (onnx.proto3).
const MODEL_METADATA_PROPS = 14;
const ENTRY_KEY = 1;
const ENTRY_VALUE = 2;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Returns every metadata_props key/value pair of an ONNX ModelProto (later duplicates win, as in onnx).
 * Only the top-level fields are walked: the graph and its weights are one length-delimited field, skipped
 * in O(1), so this is quick even on large models.
 */
export function readOnnxMetadataProps(modelBytes: Uint8Array): Map<string, string> {
  const props = new Map<string, string>();
  try {
    for (const f of parseFields(modelBytes)) {
      if (f.field !== MODEL_METADATA_PROPS || f.wire !== WIRE_LEN) continue;
      let key: string | undefined;
      let value = '';
      for (const e of parseFields(modelBytes, f.valueStart, f.end)) {
        if (e.wire !== WIRE_LEN) continue;
        if (e.field === ENTRY_KEY) key = decodeUtf8(modelBytes.subarray(e.valueStart, e.end));
        else if (e.field === ENTRY_VALUE) value = decodeUtf8(modelBytes.subarray(e.valueStart, e.end));
      }
      if (key !== undefined) props.set(key, value);
    }
  } catch (error) {
    if (error instanceof ProtobufWireError) throw new ModelMetadataError(`not an ONNX model: ${error.message}`);
    throw error;
  }
  return props;
}

function decodeUtf8(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new ModelMetadataError('ONNX metadata_props holds a string that is not valid UTF-8');
  }
}

/**
 * Reads class names, input size and stride from the metadata an Ultralytics export writes
 * (names, imgsz, stride), so models trained on other datasets work without configuration.
 */
export function readOnnxModelInfo(modelBytes: Uint8Array): ModelInfo {
  return modelInfoFromMetadata(readOnnxMetadataProps(modelBytes));
}

/** The same from metadata_props already parsed (the converter has the whole model decoded by protobufjs). */
export function modelInfoFromMetadata(props: ReadonlyMap<string, string>): ModelInfo {
  const hint = 'expected an Ultralytics YOLOv8 ONNX export, which writes names, imgsz and stride into metadata_props';
  const required = (key: string): string => {
    const value = props.get(key);
    if (value === undefined) {
      const found = props.size ? `found keys: ${[...props.keys()].join(', ')}` : 'the model has no metadata_props';
      throw new ModelMetadataError(`ONNX model metadata has no "${key}" (${found}); ${hint}`);
    }
    return value;
  };
  const info: ModelInfo = {
    names: parseNames(required('names')),
    imgsz: parseImgsz(required('imgsz')),
    stride: parseStride(required('stride')),
  };
  const description = [props.get('description'), props.get('version') && `Ultralytics ${props.get('version')}`]
    .filter(Boolean)
    .join(', ');
  if (description) info.description = description;
  return info;
}

/** Parses `[640, 640]` (or a bare `640`, meaning square) into [height, width]. */
export function parseImgsz(text: string): [number, number] {
  const trimmed = text.trim();
  const list = /^\[\s*(\d+)\s*,\s*(\d+)\s*\]$/.exec(trimmed);
  const single = /^\[?\s*(\d+)\s*\]?$/.exec(trimmed);
  const [h, w] = list ? [Number(list[1]), Number(list[2])] : single ? [Number(single[1]), Number(single[1])] : [NaN, NaN];
  if (!(h > 0 && w > 0)) throw new ModelMetadataError(`ONNX metadata "imgsz" is not [height, width]: ${JSON.stringify(text)}`);
  return [h, w];
}

function parseStride(text: string): number {
  const stride = Number(text.trim());
  if (!Number.isInteger(stride) || stride <= 0) throw new ModelMetadataError(`ONNX metadata "stride" is not a positive integer: ${JSON.stringify(text)}`);
  return stride;
}

/**
 * Parses the Python repr of the names dict, `{0: 'person', 1: "it's", ...}` (or a list `['a', 'b']`),
 * into an array indexed by class id. A hand-written scanner rather than JSON tricks, because Python
 * picks either quote kind per string and escapes with backslashes.
 */
export function parseNames(text: string): string[] {
  const fail = (why: string, at: number): never => {
    throw new ModelMetadataError(`ONNX metadata "names" is not a Python dict of class names (${why} at offset ${at}): ${JSON.stringify(text.slice(0, 120))}`);
  };
  let i = 0;
  const skipSpace = (): void => {
    while (i < text.length && /\s/.test(text[i]!)) i++;
  };
  const expect = (ch: string): void => {
    skipSpace();
    if (text[i] !== ch) fail(`expected '${ch}'`, i);
    i++;
  };
  const readInt = (): number => {
    skipSpace();
    const match = /^\d+/.exec(text.slice(i, i + 16));
    if (!match) return fail('expected an integer class id', i);
    i += match[0].length;
    return Number(match[0]);
  };
  const readString = (): string => {
    skipSpace();
    const quote = text[i];
    if (quote !== "'" && quote !== '"') return fail('expected a quoted class name', i);
    i++;
    let out = '';
    while (i < text.length && text[i] !== quote) {
      const ch = text[i++]!;
      if (ch !== '\\') {
        out += ch;
        continue;
      }
      const esc = text[i++];
      if (esc === undefined) break;
      if (esc === 'x' || esc === 'u' || esc === 'U') {
        const len = esc === 'x' ? 2 : esc === 'u' ? 4 : 8;
        const hex = text.slice(i, i + len);
        if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== len) fail(`bad \\${esc} escape`, i);
        out += String.fromCodePoint(parseInt(hex, 16));
        i += len;
      } else {
        out += ({ n: '\n', t: '\t', r: '\r', '0': '\0' } as Record<string, string>)[esc] ?? esc;
      }
    }
    if (text[i] !== quote) fail('unterminated string', i);
    i++;
    return out;
  };

  skipSpace();
  const isList = text[i] === '[';
  expect(isList ? '[' : '{');
  const close = isList ? ']' : '}';
  const byId = new Map<number, string>();
  skipSpace();
  if (text[i] !== close) {
    for (;;) {
      const id = isList ? byId.size : readInt();
      if (!isList) expect(':');
      if (byId.has(id)) fail(`duplicate class id ${id}`, i);
      byId.set(id, readString());
      skipSpace();
      if (text[i] === ',') {
        i++;
        skipSpace();
        if (text[i] === close) break; // trailing comma
        continue;
      }
      break;
    }
  }
  expect(close);
  skipSpace();
  if (i !== text.length) fail('unexpected trailing text', i);
  if (byId.size === 0) fail('no classes', 0);
  // Class ids index the network's score rows, so they must be exactly 0..n-1.
  const names: string[] = [];
  for (let id = 0; id < byId.size; id++) {
    const name = byId.get(id);
    if (name === undefined) fail(`class ids are not 0..${byId.size - 1} (missing ${id})`, 0);
    names.push(name!);
  }
  return names;
}

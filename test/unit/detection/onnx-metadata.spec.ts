import assert from 'node:assert/strict';
import { ModelMetadataError, parseImgsz, parseNames, readOnnxMetadataProps, readOnnxModelInfo } from '../../../src/detection/onnx-metadata.ts';

// A hand-rolled protobuf encoder, independent of the reader under test.
function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 128) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}
const tag = (field: number, wire: number) => varint(field * 8 + wire);
const bytesField = (field: number, payload: number[] | Uint8Array) => [...tag(field, 2), ...varint(payload.length), ...payload];
const strField = (field: number, s: string) => bytesField(field, new TextEncoder().encode(s));
const entry = (key: string, value: string) => bytesField(14, [...strField(1, key), ...strField(2, value)]);

const COCO_NAMES = "{0: 'person', 1: 'bicycle', 2: 'traffic light', 3: \"it's\"}";

function model(...metadata: number[][]): Uint8Array {
  return Uint8Array.from([
    ...tag(1, 0), ...varint(8), // ir_version
    ...strField(2, 'pytorch'), // producer_name
    ...tag(5, 0), ...varint(2 ** 40), // model_version: a varint past 32 bits
    ...bytesField(7, new Uint8Array(300).fill(0xff)), // "graph": junk that must be skipped by length (2-byte length)
    ...tag(99, 5), 1, 2, 3, 4, // unknown fixed32
    ...tag(100, 1), 1, 2, 3, 4, 5, 6, 7, 8, // unknown fixed64
    ...metadata.flat(),
    ...bytesField(8, [...tag(1, 2), 0, ...tag(2, 0), 17]), // opset_import after the metadata
  ]);
}

describe('readOnnxModelInfo', () => {
  it('reads names, imgsz, stride and description from metadata_props, skipping other fields', () => {
    const bytes = model(
      entry('description', 'Ultralytics YOLOv8n model trained on coco.yaml'),
      entry('stride', '32'),
      entry('imgsz', '[480, 640]'),
      entry('names', COCO_NAMES),
      entry('version', '8.0.175'),
    );
    const info = readOnnxModelInfo(bytes);
    assert.deepEqual(info.names, ['person', 'bicycle', 'traffic light', "it's"]);
    assert.deepEqual(info.imgsz, [480, 640]);
    assert.equal(info.stride, 32);
    assert.equal(info.description, 'Ultralytics YOLOv8n model trained on coco.yaml, Ultralytics 8.0.175');
  });

  it('reads entries whose value comes before the key, and long values', () => {
    const longNames = `{${Array.from({ length: 500 }, (_, i) => `${i}: 'class number ${i}'`).join(', ')}}`;
    const reversed = bytesField(14, [...strField(2, longNames), ...strField(1, 'names')]);
    const props = readOnnxMetadataProps(model(reversed, entry('imgsz', '[640, 640]'), entry('stride', '32')));
    const info = readOnnxModelInfo(model(reversed, entry('imgsz', '[640, 640]'), entry('stride', '32')));
    assert.equal(props.get('names'), longNames);
    assert.equal(info.names.length, 500);
    assert.equal(info.names[499], 'class number 499');
  });

  it('names the missing key and the keys it found', () => {
    assert.throws(
      () => readOnnxModelInfo(model(entry('imgsz', '[640, 640]'), entry('stride', '32'))),
      (e: unknown) => e instanceof ModelMetadataError && /"names"/.test(e.message) && /found keys: imgsz, stride/.test(e.message),
    );
    assert.throws(() => readOnnxModelInfo(model()), /no metadata_props/);
  });

  it('rejects malformed values with the key in the message', () => {
    const base = [entry('names', COCO_NAMES), entry('stride', '32')];
    assert.throws(() => readOnnxModelInfo(model(...base, entry('imgsz', '640x640'))), /"imgsz"/);
    assert.throws(() => readOnnxModelInfo(model(entry('names', COCO_NAMES), entry('imgsz', '[640, 640]'), entry('stride', '-1'))), /"stride"/);
    assert.throws(() => readOnnxModelInfo(model(entry('names', 'person,car'), entry('imgsz', '[640, 640]'), entry('stride', '32'))), /"names"/);
  });

  it('rejects files that are not protobuf', () => {
    const bytes = model(entry('names', COCO_NAMES));
    assert.throws(() => readOnnxModelInfo(bytes.subarray(0, bytes.length - 5)), ModelMetadataError); // truncated
    assert.throws(() => readOnnxModelInfo(new TextEncoder().encode('<html>not a model</html>')), ModelMetadataError);
  });
});

describe('parseNames', () => {
  it('parses the Python dict repr with either quote kind and spaces', () => {
    assert.deepEqual(parseNames(`{0: 'hot dog', 1: "it's", 2: 'say "hi"', 3:'x'}`), ['hot dog', "it's", 'say "hi"', 'x']);
  });

  it('unescapes backslashes the way Python repr writes them', () => {
    assert.deepEqual(parseNames(String.raw`{0: 'a\'b "c"', 1: 'back\\slash', 2: 'caf\xe9', 3: 'tab\there'}`), ['a\'b "c"', 'back\\slash', 'café', 'tab\there']);
  });

  it('keeps non-ASCII names and commas/colons inside names', () => {
    assert.deepEqual(parseNames("{0: 'voiture, rouge', 1: 'a: b', 2: '歩行者'}"), ['voiture, rouge', 'a: b', '歩行者']);
  });

  it('orders by class id, not by position, and accepts a list or a trailing comma', () => {
    assert.deepEqual(parseNames("{1: 'b', 0: 'a',}"), ['a', 'b']);
    assert.deepEqual(parseNames("['a', 'b']"), ['a', 'b']);
  });

  it('rejects gaps, duplicates, empty dicts and junk', () => {
    assert.throws(() => parseNames("{0: 'a', 2: 'b'}"), /missing 1/);
    assert.throws(() => parseNames("{0: 'a', 0: 'b'}"), /duplicate class id 0/);
    assert.throws(() => parseNames('{}'), /no classes/);
    assert.throws(() => parseNames("{0: 'a'"), ModelMetadataError);
    assert.throws(() => parseNames("{0: 'a}"), /unterminated/);
    assert.throws(() => parseNames("{0: 'a'} extra"), /trailing/);
    assert.throws(() => parseNames("{0: person}"), /quoted class name/);
  });
});

describe('parseImgsz', () => {
  it('reads [h, w] and a bare size', () => {
    assert.deepEqual(parseImgsz('[640, 640]'), [640, 640]);
    assert.deepEqual(parseImgsz('[384,640]'), [384, 640]);
    assert.deepEqual(parseImgsz('320'), [320, 320]);
    assert.throws(() => parseImgsz('[0, 640]'), ModelMetadataError);
    assert.throws(() => parseImgsz('[640, 640, 3]'), ModelMetadataError);
  });
});

import assert from 'node:assert/strict';
import sharp from 'sharp';
import { JpegSplitter } from '../../../src/media/jpeg-splitter.ts';

/** A marker segment: FF, marker, 16-bit length (which counts itself), payload. */
function segment(marker: number, payload: number[]): number[] {
  const length = payload.length + 2;
  return [0xff, marker, length >> 8, length & 0xff, ...payload];
}
const SOI = [0xff, 0xd8];
const EOI = [0xff, 0xd9];
const sof0 = segment(0xc0, [8, 0, 16, 0, 16, 1, 1, 0x11, 0]);
const sos = segment(0xda, [1, 1, 0, 0, 63, 0]);

/**
 * Structurally complete JPEGs, built by hand to hold every case the parser must get right:
 * FFD9/FFD8 bytes inside segments, a segment longer than 255 bytes, stuffing, restart markers,
 * fill bytes, and a second scan after a DHT (as in progressive JPEGs).
 */
const HANDMADE = [
  Buffer.from([
    ...SOI,
    ...segment(0xe0, [0x4a, 0x46, 0x49, 0x46, 0, 1, 2, 0, 0, 1, 0, 1, 0, 0]),
    ...segment(0xfe, [0xff, 0xd9, 0xff, 0xd8, 0xff, 0x00, 0x41]), // a comment holding EOI, SOI and stuffing bytes
    ...segment(0xdd, [0, 4]), // DRI: restart every 4 MCUs
    ...sof0,
    ...sos,
    0x12, 0xff, 0x00, 0x34, 0xff, 0xd0, 0x56, 0xff, 0x00, 0xff, 0xd1, 0x78, 0xff, 0xff, 0xd2, 0x9a, 0xff, 0xd7, 0xbc,
    ...EOI,
  ]),
  Buffer.from([
    ...SOI,
    ...segment(0xe1, Array.from({ length: 300 }, (_, i) => (i % 3 === 0 ? 0xff : 0xd9))), // APP1 longer than 255 bytes
    ...sof0,
    ...sos,
    0x01, 0xff, 0x00, 0xff, 0x00, 0x02,
    ...segment(0xc4, [0x10, 0xff, 0xd9, 0xff]), // DHT between scans, its table holds FFD9
    ...sos,
    0x03, 0xff, 0x00, 0x04,
    0xff, 0xff, 0xd9, // fill byte, then EOI
  ]),
  Buffer.from([...SOI, ...sof0, ...sos, ...EOI]), // empty scan
];

function splitAt(stream: Buffer, cuts: number[]): Buffer[] {
  const splitter = new JpegSplitter();
  const images: Buffer[] = [];
  let from = 0;
  for (const cut of [...cuts, stream.length]) {
    images.push(...splitter.push(stream.subarray(from, cut)));
    from = cut;
  }
  splitter.end();
  return images;
}

function assertSameImages(actual: Buffer[], expected: Buffer[], what: string): void {
  assert.equal(actual.length, expected.length, `${what}: image count`);
  for (let i = 0; i < expected.length; i += 1) assert.ok(actual[i]!.equals(expected[i]!), `${what}: image ${i} differs`);
}

describe('JpegSplitter', () => {
  let real: Buffer[];

  before(async () => {
    // Noise makes dense entropy-coded data with many FF00 stuffing pairs; one progressive JPEG has several scans.
    const noise = (seed: number) => {
      let x = seed;
      return Buffer.from(Array.from({ length: 48 * 32 * 3 }, () => {
        x = (Math.imul(x, 1103515245) + 12345) >>> 0;
        return x >>> 24;
      }));
    };
    const raw = (seed: number) => sharp(noise(seed), { raw: { width: 48, height: 32, channels: 3 } });
    real = [
      await raw(1).jpeg({ quality: 95 }).toBuffer(),
      await raw(2).jpeg({ quality: 80, progressive: true }).toBuffer(),
      await raw(3).jpeg({ quality: 50, chromaSubsampling: '4:4:4' }).withExif({ IFD0: { ImageDescription: 'frame' } }).toBuffer(),
    ];
  });

  it('splits handmade JPEGs at every single byte offset', () => {
    const stream = Buffer.concat(HANDMADE);
    for (let cut = 0; cut <= stream.length; cut += 1) assertSameImages(splitAt(stream, [cut]), HANDMADE, `cut at ${cut}`);
  });

  it('splits handmade JPEGs at every pair of offsets, and fed one byte at a time', () => {
    const stream = Buffer.concat(HANDMADE);
    for (let a = 0; a <= stream.length; a += 1) {
      for (let b = a; b <= stream.length; b += 3) assertSameImages(splitAt(stream, [a, b]), HANDMADE, `cuts at ${a}, ${b}`);
    }
    assertSameImages(splitAt(stream, Array.from({ length: stream.length }, (_, i) => i)), HANDMADE, 'one byte at a time');
  });

  it('splits real encoder output (baseline, progressive, EXIF) at every byte offset', async () => {
    const stream = Buffer.concat(real);
    assert.ok(stream.length > 3000);
    let stuffed = 0;
    for (let i = 0; i + 1 < stream.length; i += 1) if (stream[i] === 0xff && stream[i + 1] === 0x00) stuffed += 1;
    assert.ok(stuffed > 10, `the sample should exercise stuffing (${stuffed} FF00 pairs)`);
    for (let cut = 0; cut <= stream.length; cut += 1) assertSameImages(splitAt(stream, [cut]), real, `cut at ${cut}`);
    for (const image of splitAt(stream, [1000, 1001, 5000])) {
      const meta = await sharp(image).metadata();
      assert.equal(meta.width, 48);
      assert.equal(meta.height, 32);
    }
  });

  it('returns views of the chunk without copying when an image lies inside one chunk', () => {
    const stream = Buffer.concat(HANDMADE);
    const [first] = new JpegSplitter().push(stream);
    assert.equal(first!.buffer, stream.buffer);
  });

  it('holds an unfinished image until its end marker arrives', () => {
    const splitter = new JpegSplitter();
    const image = HANDMADE[0]!;
    assert.deepEqual(splitter.push(image.subarray(0, 20)), []);
    assert.equal(splitter.pendingBytes, 20);
    assert.throws(() => splitter.end(), /ended inside a JPEG \(20 bytes/);
    const rest = splitter.push(image.subarray(20));
    assert.ok(rest[0]!.equals(image));
    assert.equal(splitter.pendingBytes, 0);
    splitter.end();
  });

  it('refuses bytes that are not a JPEG stream instead of guessing', () => {
    assert.throws(() => new JpegSplitter().push(Buffer.from('not a jpeg')), /expected a JPEG start/);
    assert.throws(() => new JpegSplitter().push(Buffer.from([...HANDMADE[2]!, 0x00])), /after 1 image\(s\): expected a JPEG start/);
    assert.throws(() => new JpegSplitter().push(Buffer.from([...SOI, 0xff, 0xe0, 0x00, 0x01])), /length 1 is below 2/);
    assert.throws(() => new JpegSplitter().push(Buffer.from([...SOI, 0xff, 0xd8])), /inside an image/);
    assert.throws(() => new JpegSplitter().push(Buffer.from([...SOI, 0x00])), /expected a marker/);
  });
});

import assert from 'node:assert/strict';
import { decodeYoloBatch, decodeYoloOutput, iou, type LetterboxMapping } from '../../../src/detection/postprocess.ts';

interface Anchor {
  /** cx, cy, w, h in letterbox pixels */
  xywh: [number, number, number, number];
  scores: Record<number, number>;
}

/** Builds a channel-major [4 + nc, anchors] output; anchors not given stay all-zero. */
function makeOutput(numAnchors: number, numClasses: number, anchors: Record<number, Anchor>): Float32Array {
  const out = new Float32Array((4 + numClasses) * numAnchors);
  for (const [key, anchor] of Object.entries(anchors)) {
    const a = Number(key);
    anchor.xywh.forEach((v, c) => (out[c * numAnchors + a] = v));
    for (const [cls, score] of Object.entries(anchor.scores)) out[(4 + Number(cls)) * numAnchors + a] = score;
  }
  return out;
}

const identity: LetterboxMapping = { sourceWidth: 640, sourceHeight: 640, scale: 1, padLeft: 0, padTop: 0 };
const names = ['person', 'car', 'dog'];
const opts = { confidenceThreshold: 0.25, iouThreshold: 0.5 };

describe('iou', () => {
  it('is 1 for identical, 0 for disjoint or touching, exact for partial overlap', () => {
    assert.equal(iou([0, 0, 10, 10], [0, 0, 10, 10]), 1);
    assert.equal(iou([0, 0, 10, 10], [20, 20, 30, 30]), 0);
    assert.equal(iou([0, 0, 10, 10], [10, 0, 20, 10]), 0);
    assert.equal(iou([0, 0, 10, 10], [5, 0, 15, 10]), 50 / 150);
    assert.equal(iou([0, 0, 10, 10], [2, 2, 4, 4]), 4 / 100);
    assert.equal(iou([0, 0, 0, 0], [0, 0, 0, 0]), 0);
  });
});

describe('decodeYoloOutput', () => {
  it('takes the best class per anchor and keeps only scores above the threshold', () => {
    const out = makeOutput(8, 3, {
      0: { xywh: [100, 100, 20, 20], scores: { 0: 0.3, 1: 0.6, 2: 0.1 } },
      3: { xywh: [300, 300, 20, 20], scores: { 2: 0.25 } }, // equal to the threshold: dropped
      5: { xywh: [500, 500, 20, 20], scores: { 0: 0.2, 1: 0.24 } }, // below: dropped
      7: { xywh: [50, 400, 10, 40], scores: { 2: 0.9 } },
    });
    const dets = decodeYoloOutput(out, 8, 3, identity, names, opts);
    assert.deepEqual(
      dets.map((d) => [d.classId, d.className, d.box]),
      [
        [2, 'dog', [45, 380, 55, 420]],
        [1, 'car', [90, 90, 110, 110]],
      ],
    );
    assert.equal(dets[0]!.confidence, Math.fround(0.9));
    assert.equal(dets[1]!.confidence, Math.fround(0.6));
  });

  it('suppresses overlaps within a class only, and only above the IoU threshold', () => {
    const out = makeOutput(6, 3, {
      0: { xywh: [100, 100, 100, 100], scores: { 0: 0.9 } },
      1: { xywh: [110, 100, 100, 100], scores: { 0: 0.8 } }, // IoU 0.818 with anchor 0: suppressed
      2: { xywh: [100, 100, 100, 100], scores: { 1: 0.7 } }, // same box, other class: kept
      3: { xywh: [100, 75, 100, 50], scores: { 0: 0.6 } }, // IoU exactly 0.5 with anchor 0: kept (needs > 0.5)
    });
    const dets = decodeYoloOutput(out, 6, 3, identity, names, opts);
    assert.deepEqual(dets.map((d) => [d.classId, d.confidence]), [[0, Math.fround(0.9)], [1, Math.fround(0.7)], [0, Math.fround(0.6)]]);
    const stricter = decodeYoloOutput(out, 6, 3, identity, names, { ...opts, iouThreshold: 0.45 });
    assert.deepEqual(stricter.map((d) => d.confidence), [Math.fround(0.9), Math.fround(0.7)]);
  });

  it('is greedy: a box suppressed by a stronger one does not suppress others', () => {
    // A overlaps B (IoU 0.6), B overlaps C (0.6), A and C overlap less (1/3): A and C survive.
    const out = makeOutput(3, 1, {
      0: { xywh: [100, 100, 100, 100], scores: { 0: 0.9 } },
      1: { xywh: [125, 100, 100, 100], scores: { 0: 0.8 } },
      2: { xywh: [150, 100, 100, 100], scores: { 0: 0.7 } },
    });
    const dets = decodeYoloOutput(out, 3, 1, identity, ['thing'], opts);
    assert.deepEqual(dets.map((d) => d.confidence), [Math.fround(0.9), Math.fround(0.7)]);
  });

  it('maps boxes back through the letterbox and clips them to the source frame', () => {
    // 1280x720 source into 640x640: scale 0.5, 140 px padding on top.
    const frame: LetterboxMapping = { sourceWidth: 1280, sourceHeight: 720, scale: 0.5, padLeft: 0, padTop: 140 };
    const out = makeOutput(4, 2, {
      0: { xywh: [200, 300, 200, 200], scores: { 0: 0.9 } }, // [100, 200, 300, 400] letterboxed
      1: { xywh: [600, 150, 100, 100], scores: { 1: 0.8 } }, // reaches into the top padding and past the right edge
    });
    const dets = decodeYoloOutput(out, 4, 2, frame, ['a', 'b'], opts);
    assert.deepEqual(dets[0]!.box, [200, 120, 600, 520]);
    assert.deepEqual(dets[1]!.box, [1100, 0, 1280, 120]);
    const padded: LetterboxMapping = { sourceWidth: 480, sourceHeight: 640, scale: 1, padLeft: 80, padTop: 0 };
    const side = decodeYoloOutput(makeOutput(1, 1, { 0: { xywh: [60, 600, 80, 100], scores: { 0: 0.5 } } }), 1, 1, padded, ['a'], opts);
    assert.deepEqual(side[0]!.box, [0, 550, 20, 640]);
  });

  it('stops at maxDetections, keeping the highest scores', () => {
    const anchors: Record<number, Anchor> = {};
    for (let i = 0; i < 10; i++) anchors[i] = { xywh: [30 + 60 * i, 30, 40, 40], scores: { [i % 3]: 0.3 + i * 0.05 } };
    const dets = decodeYoloOutput(makeOutput(10, 3, anchors), 10, 3, identity, names, opts, 4);
    assert.equal(dets.length, 4);
    assert.deepEqual(dets.map((d) => d.box[0]), [550, 490, 430, 370]);
    assert.equal(decodeYoloOutput(makeOutput(10, 3, anchors), 10, 3, identity, names, opts).length, 10);
  });

  it('works for any class count and names unknown ids', () => {
    const out = makeOutput(2, 100, { 1: { xywh: [10, 10, 4, 4], scores: { 99: 0.7, 42: 0.69 } } });
    const dets = decodeYoloOutput(out, 2, 100, identity, ['only one name'], opts);
    assert.deepEqual(dets.map((d) => [d.classId, d.className]), [[99, 'class 99']]);
    assert.deepEqual(decodeYoloOutput(new Float32Array(5 * 4), 4, 1, identity, ['x'], opts), []);
  });

  it('rejects an output too short for the declared shape', () => {
    assert.throws(() => decodeYoloOutput(new Float32Array(83 * 8400), 8400, 80, identity, names, opts), RangeError);
  });
});

describe('decodeYoloBatch', () => {
  it('decodes each frame from its own slice of the run, ignoring padding rows', () => {
    const first = makeOutput(4, 3, { 1: { xywh: [100, 100, 20, 20], scores: { 0: 0.9 } } });
    const second = makeOutput(4, 3, { 2: { xywh: [300, 200, 40, 20], scores: { 1: 0.8 } } });
    const padding = makeOutput(4, 3, { 0: { xywh: [50, 50, 10, 10], scores: { 2: 0.99 } } });
    const values = Float32Array.from([...first, ...second, ...padding]);
    const [a, b, ...rest] = decodeYoloBatch(values, [3, 7, 4], [identity, identity], names, opts);
    assert.equal(rest.length, 0);
    assert.deepEqual(a!.map((d) => [d.className, d.box]), [['person', [90, 90, 110, 110]]]);
    assert.deepEqual(b!.map((d) => [d.className, d.box]), [['car', [280, 190, 320, 210]]]);
  });

  it('refuses an output that is not [batch, 4 + classes, anchors]', () => {
    assert.throws(() => decodeYoloBatch(new Float32Array(28), [7, 4], [identity], names, opts), /shape \[7, 4\]/);
  });
});

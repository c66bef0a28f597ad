import assert from 'node:assert/strict';
import { boxOnPicture, classColor, containedRect, isShown, nearestFrame } from '../../../web/src/lib/overlay.ts';

describe('web app overlay geometry and timing', () => {
  it('places the picture like object-fit: contain: bars left and right, or above and below, or none', () => {
    // 4:3 video in a 16:9 element: pillarboxed.
    assert.deepEqual(containedRect({ width: 1600, height: 900 }, { width: 768, height: 576 }), { x: 200, y: 0, width: 1200, height: 900 });
    // 16:9 video in a 4:3 element: letterboxed.
    assert.deepEqual(containedRect({ width: 800, height: 600 }, { width: 1280, height: 720 }), { x: 0, y: 75, width: 800, height: 450 });
    assert.deepEqual(containedRect({ width: 640, height: 480 }, { width: 768, height: 576 }), { x: 0, y: 0, width: 640, height: 480 });
    // Nothing known yet (metadata not loaded): nothing to draw on.
    assert.deepEqual(containedRect({ width: 640, height: 480 }, { width: 0, height: 0 }), { x: 0, y: 0, width: 0, height: 0 });
  });

  it('scales a box from source pixels onto the picture, offset by the bars', () => {
    const picture = { x: 200, y: 0, width: 1200, height: 900 };
    // The source is 1536x1152 (a 720p-capped preview of it is smaller, same aspect): the scale is picture/source.
    assert.deepEqual(boxOnPicture([768, 576, 1536, 1152], { width: 1536, height: 1152 }, picture), { x: 800, y: 450, width: 600, height: 450 });
    assert.deepEqual(boxOnPicture([0, 0, 384, 288], { width: 768, height: 576 }, { x: 0, y: 75, width: 800, height: 450 }), { x: 0, y: 75, width: 400, height: 225 });
  });

  it('finds the frame nearest in time, the earlier one on a tie, none in an empty list', () => {
    const pts = [0, 500, 1000, 1500];
    assert.equal(nearestFrame(pts, 0), 0);
    assert.equal(nearestFrame(pts, 240), 0);
    assert.equal(nearestFrame(pts, 250), 0);
    assert.equal(nearestFrame(pts, 260), 1);
    assert.equal(nearestFrame(pts, 1000), 2);
    assert.equal(nearestFrame(pts, 99_999), 3);
    assert.equal(nearestFrame(pts, -50), 0);
    assert.equal(nearestFrame([], 10), -1);
    assert.equal(nearestFrame([700], 10), 0);
  });

  it('filters by hidden classes and minimum confidence', () => {
    const filter = { hidden: new Set(['car']), minConfidence: 0.5 };
    assert.equal(isShown({ className: 'person', confidence: 0.5 }, filter), true);
    assert.equal(isShown({ className: 'person', confidence: 0.49 }, filter), false);
    assert.equal(isShown({ className: 'car', confidence: 0.99 }, filter), false);
  });

  it('gives each class one colour, the same every time, and the common street classes distinct ones', () => {
    assert.equal(classColor('person'), classColor('person'));
    const common = ['person', 'car', 'truck', 'bus', 'bicycle', 'motorcycle', 'dog', 'handbag', 'backpack', 'umbrella'].map(classColor);
    assert.equal(new Set(common).size, common.length);
    assert.match(classColor('traffic light'), /^hsl\(\d+ 85% 55%\)$/);
  });
});

import assert from 'node:assert/strict';
import { broadcastShapes, reshapeGroups, reshapeLayout, transposeBetween, transposeData } from '../../../../src/detection/tfjs/layout.ts';

describe('tfjs layout arithmetic', () => {
  it('transposes row-major data like numpy.transpose', () => {
    // x[i][j][k] = 100i + 10j + k, shape [2, 3, 4]
    const x = Array.from({ length: 24 }, (_, n) => 100 * Math.floor(n / 12) + 10 * (Math.floor(n / 4) % 3) + (n % 4));
    const y = transposeData(x, [2, 3, 4], [2, 0, 1]); // shape [4, 2, 3], y[k][i][j] = x[i][j][k]
    assert.deepEqual(y.slice(0, 6), [0, 10, 20, 100, 110, 120]);
    assert.deepEqual(y.slice(6, 12), [1, 11, 21, 101, 111, 121]);
    assert.deepEqual(transposeData(Float32Array.of(1, 2, 3, 4, 5, 6), [2, 3], [1, 0]), Float32Array.of(1, 4, 2, 5, 3, 6));
    assert.deepEqual(transposeBetween([0, 2, 3, 1], [0, 1, 2, 3]), [0, 3, 1, 2]);
  });

  it('broadcasts shapes from the trailing axis', () => {
    assert.deepEqual(broadcastShapes([1, 2, 8400], [1, 8400]), [1, 2, 8400]);
    assert.deepEqual(broadcastShapes([4, 1, 3], [5, 1]), [4, 5, 3]);
    assert.deepEqual(broadcastShapes([], [2, 3]), [2, 3]);
    assert.equal(broadcastShapes([2, 3], [4, 3]), undefined);
  });

  it('keeps the YOLOv8 head reshapes in the layout they arrive in', () => {
    // [1,144,80,80] in NHWC -> [1,144,6400]: merging H and W, which stay adjacent in NHWC.
    const merge = reshapeGroups([1, 144, 80, 80], [1, 144, 6400])!;
    assert.deepEqual(merge, [{ ins: [0], outs: [0] }, { ins: [1], outs: [1] }, { ins: [2, 3], outs: [2] }]);
    assert.deepEqual(reshapeLayout(merge, [0, 2, 3, 1]), [0, 2, 1]);
    // DFL: [1,64,8400] held as [N,8400,64] -> [1,4,16,8400] held as [N,8400,4,16].
    assert.deepEqual(reshapeLayout(reshapeGroups([1, 64, 8400], [1, 4, 16, 8400])!, [0, 2, 1]), [0, 3, 1, 2]);
    // [1,1,4,8400] held as [N,8400,4,1] -> [1,4,8400]: a vanishing unit dim.
    assert.deepEqual(reshapeLayout(reshapeGroups([1, 1, 4, 8400], [1, 4, 8400])!, [0, 3, 2, 1]), [0, 2, 1]);
    // New unit dims go after the group before them.
    assert.deepEqual(reshapeLayout(reshapeGroups([2, 6], [2, 1, 6])!, [0, 1]), [0, 1, 2]);
  });

  it('refuses to keep a layout that would reorder elements', () => {
    // Flattening C, H, W of an NHWC tensor needs the NCHW element order.
    const groups = reshapeGroups([1, 3, 4, 4], [1, 48])!;
    assert.equal(reshapeLayout(groups, [0, 2, 3, 1]), undefined);
    assert.deepEqual(reshapeLayout(groups, [0, 1, 2, 3]), [0, 1]);
    assert.equal(reshapeGroups([2, 3], [7]), undefined);
  });
});

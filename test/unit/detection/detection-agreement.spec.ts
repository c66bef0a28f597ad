import assert from 'node:assert/strict';
import type { Detection } from '../../../src/detection/types.ts';
import { detectionAgreement } from '../../helpers/detection-agreement.ts';

const det = (classId: number, confidence: number, box: Detection['box']): Detection => ({ classId, className: String(classId), confidence, box });

describe('detectionAgreement (test helper)', () => {
  it('matches same-class boxes at the IoU bound, each once, and leaves low-confidence detections out', () => {
    const reference = [[det(0, 0.9, [0, 0, 10, 10]), det(0, 0.8, [20, 0, 30, 10]), det(1, 0.9, [0, 0, 10, 10]), det(0, 0.3, [50, 50, 60, 60])]];
    const candidate = [[det(0, 0.9, [0, 0, 10, 9]), det(0, 0.9, [0, 0, 10, 10]), det(2, 0.9, [20, 0, 30, 10]), det(1, 0.6, [0, 0, 10, 10])]];
    // IoU([0,0,10,9], [0,0,10,10]) = 0.9: one of the two class-0 candidates matches the first reference; class 2 matches nothing.
    const agreement = detectionAgreement(reference, candidate, 0.8, 0.5);
    assert.deepEqual(agreement, { recall: 2 / 3, precision: 2 / 4, reference: 3, candidate: 4, matched: 2, images: 1 });
    assert.equal(detectionAgreement(reference, candidate, 0.95, 0.5).matched, 2, 'the exact box is preferred');
    assert.equal(detectionAgreement([[]], [[]], 0.5, 0.5).recall, 1);
    assert.throws(() => detectionAgreement([[]], [], 0.5, 0.5), /1 reference images but 0 candidate images/);
  });
});

import { iou } from '../../src/detection/postprocess.ts';
import type { Detection } from '../../src/detection/types.ts';

/** How far one set of detections agrees with a reference set, image by image, pooled over the images. */
export interface Agreement {
  /** Reference detections matched by a candidate, over all reference detections (1 when there are none). */
  recall: number;
  /** Candidate detections matched to a reference, over all candidate detections (1 when there are none). */
  precision: number;
  reference: number;
  candidate: number;
  matched: number;
  images: number;
}

/**
 * Recall and precision of `candidate` against `reference` (one detection list per image, same order):
 * detections below minConfidence are left out on both sides, then same-class pairs at IoU >= minIou are
 * matched greedily, best overlap first, each detection at most once.
 */
export function detectionAgreement(reference: Detection[][], candidate: Detection[][], minIou: number, minConfidence: number): Agreement {
  if (reference.length !== candidate.length) throw new Error(`detectionAgreement: ${reference.length} reference images but ${candidate.length} candidate images`);
  let refCount = 0;
  let candCount = 0;
  let matched = 0;
  reference.forEach((refImage, i) => {
    const refs = refImage.filter((d) => d.confidence >= minConfidence);
    const cands = candidate[i]!.filter((d) => d.confidence >= minConfidence);
    refCount += refs.length;
    candCount += cands.length;
    const pairs: Array<{ r: number; c: number; overlap: number }> = [];
    refs.forEach((r, ri) =>
      cands.forEach((c, ci) => {
        if (r.classId !== c.classId) return;
        const overlap = iou(r.box, c.box);
        if (overlap >= minIou) pairs.push({ r: ri, c: ci, overlap });
      }),
    );
    pairs.sort((a, b) => b.overlap - a.overlap);
    const usedR = new Set<number>();
    const usedC = new Set<number>();
    for (const { r, c } of pairs) {
      if (usedR.has(r) || usedC.has(c)) continue;
      usedR.add(r);
      usedC.add(c);
      matched += 1;
    }
  });
  return {
    recall: refCount ? matched / refCount : 1,
    precision: candCount ? matched / candCount : 1,
    reference: refCount,
    candidate: candCount,
    matched,
    images: reference.length,
  };
}

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import * as ort from 'onnxruntime-node';
import { createDetector } from '../../src/detection/create-detector.ts';
import { scaledFrameSize, type FrameSize } from '../../src/detection/letterbox-geometry.ts';
import { currentFrameDecoder, hwcToChw, jpegFrameSize, prepareFrame, useFrameDecoder } from '../../src/detection/letterbox.ts';
import { decodeYoloBatch } from '../../src/detection/postprocess.ts';
import type { Detection, Detector, PreparedFrame } from '../../src/detection/types.ts';
import { resolveMediaBinaries } from '../../src/media/binaries.ts';
import { MediaRepository } from '../../src/media/media.repository.ts';
import { detectionAgreement, type Agreement } from '../helpers/detection-agreement.ts';
import { SKIMAGE_PHOTOS, VTEST_AVI } from '../helpers/media-fixtures.ts';

const MODEL = 'models/yolov8n.onnx';
/** Landscape and portrait, larger than 640 (scaled by extraction) and smaller (kept). */
const PHOTOS = SKIMAGE_PHOTOS;
/** One frame every 2 s of vtest.avi: 40 frames of a street scene with many small people. */
const VIDEO_FPS = 0.5;
const OPTIONS = { confidenceThreshold: 0.25, iouThreshold: 0.7 };
const BOX = { width: 640, height: 640 };
// The bound the issue sets, kept as it was before this path existed.
const MIN_RECALL = 0.98;
const MIN_PRECISION = 0.98;
const MIN_IOU = 0.8;
const MIN_CONFIDENCE = 0.5;

/**
 * The production path (frames stored scaled to the letterbox size by ffmpeg at FRAME_SIZE=640, decoded into
 * bytes, normalised inside the model) against ONNX Runtime on the original frames: the stock model, fed the
 * float input the way the service did before (full-size frame, libvips linear resize, / 255 in JavaScript).
 */
describe('preprocessing at native speed keeps the detections of ONNX Runtime on the original frames', function () {
  this.timeout(600_000);
  let reference: ort.InferenceSession;
  let detector: Detector;
  let media: MediaRepository;
  let tmp: string;

  before(async () => {
    if (!existsSync(MODEL)) throw new Error(`${MODEL} is missing: run \`npm run fetch-model\``);
    reference = await ort.InferenceSession.create(MODEL);
    detector = await createDetector({ modelPath: MODEL });
    media = new MediaRepository(await resolveMediaBinaries({}));
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-preprocess-'));
  });
  after(async () => {
    await reference?.release();
    await detector?.close();
    if (tmp) await fs.rm(tmp, { recursive: true, force: true });
  });

  async function referenceDetections(frames: PreparedFrame[]): Promise<Detection[][]> {
    const results: Detection[][] = [];
    for (const frame of frames) {
      const input = new ort.Tensor('float32', hwcToChw(frame.pixels, 640 * 640), [1, 3, 640, 640]);
      const output = (await reference.run({ images: input })).output0!;
      results.push(...decodeYoloBatch(output.data as Float32Array, output.dims, [frame], detector.modelInfo.names, OPTIONS));
    }
    return results;
  }

  /** Frames as extraction stores them, with FRAME_SIZE=640 (scaled) or at source size. */
  async function extract(file: string, fps: number | null, source: FrameSize, scaled: boolean): Promise<Buffer[]> {
    const to = scaled ? scaledFrameSize(source, BOX) : undefined;
    const jpegs: Buffer[] = [];
    await media.extractFrames(file, { fps, jpegQuality: 3, startTimeMs: 0, scale: to && { from: source, to } }, async (frame) => void jpegs.push(frame.jpeg));
    return jpegs;
  }

  /**
   * Extraction opens video containers only (the upload format allowlist has no image demuxers): the photo
   * goes in a one-frame Matroska file by stream copy, so extraction decodes exactly the photo's pixels.
   */
  async function asOneFrameVideo(photo: string): Promise<string> {
    const file = path.join(tmp, `${path.basename(photo)}.mkv`);
    await execa('ffmpeg', ['-nostdin', '-v', 'error', '-y', '-i', photo, '-c:v', 'copy', '-f', 'matroska', file]);
    return file;
  }

  function report(label: string, agreement: Agreement): void {
    console.log(
      `      ${label}: recall ${agreement.recall.toFixed(4)}, precision ${agreement.precision.toFixed(4)} ` +
        `(${agreement.matched} matched of ${agreement.reference} reference / ${agreement.candidate} detections, ${agreement.images} images; IoU >= ${MIN_IOU}, confidence >= ${MIN_CONFIDENCE})`,
    );
    assert.ok(agreement.reference > 0, `${label}: the reference found nothing, so the figures say nothing`);
    assert.ok(agreement.recall >= MIN_RECALL, `${label}: recall ${agreement.recall} < ${MIN_RECALL}`);
    assert.ok(agreement.precision >= MIN_PRECISION, `${label}: precision ${agreement.precision} < ${MIN_PRECISION}`);
  }

  it(`on vtest.avi at ${VIDEO_FPS} fps: recall and precision >= ${MIN_RECALL} at IoU >= ${MIN_IOU}, confidence >= ${MIN_CONFIDENCE}, with either frame decoder`, async () => {
    const probe = await media.probe(VTEST_AVI);
    assert.ok(probe.ok);
    const source = { width: probe.video.width, height: probe.video.height };
    const [original, stored] = await Promise.all([extract(VTEST_AVI, VIDEO_FPS, source, false), extract(VTEST_AVI, VIDEO_FPS, source, true)]);
    assert.equal(stored.length, original.length);
    assert.ok(original.length >= 39, `${original.length} frames`);
    assert.deepEqual(jpegFrameSize(stored[0]!), { width: 640, height: 480, components: 3, sof: 0xc0 }, 'extraction stored the frames at the letterbox size');
    // So the stored frames go through the fast path (decoded into place); the originals need a resize (libvips).
    assert.equal(currentFrameDecoder(), 'libjpeg-turbo');
    const imgsz = detector.modelInfo.imgsz;
    const expected = await referenceDetections(await Promise.all(original.map((jpeg) => prepareFrame(jpeg, imgsz))));
    const ours = await detector.detectBatch(await Promise.all(stored.map((jpeg) => prepareFrame(jpeg, imgsz, undefined, source))), OPTIONS);
    report('vtest.avi, libjpeg-turbo', detectionAgreement(expected, ours, MIN_IOU, MIN_CONFIDENCE));
    useFrameDecoder('libvips');
    try {
      const viaLibvips = await detector.detectBatch(await Promise.all(stored.map((jpeg) => prepareFrame(jpeg, imgsz, undefined, source))), OPTIONS);
      report('vtest.avi, libvips', detectionAgreement(expected, viaLibvips, MIN_IOU, MIN_CONFIDENCE));
    } finally {
      useFrameDecoder('auto');
    }
  });

  it(`on ${PHOTOS.length} real photos: the same bounds`, async () => {
    const imgsz = detector.modelInfo.imgsz;
    const expected: Detection[][] = [];
    const ours: Detection[][] = [];
    for (const photo of PHOTOS) {
      const bytes = readFileSync(photo);
      const original = await prepareFrame(bytes, imgsz);
      const source = { width: original.sourceWidth, height: original.sourceHeight };
      const [stored] = await extract(await asOneFrameVideo(photo), null, source, true);
      expected.push(...(await referenceDetections([original])));
      ours.push(...(await detector.detectBatch([await prepareFrame(stored!, imgsz, undefined, source)], OPTIONS)));
    }
    report('photos', detectionAgreement(expected, ours, MIN_IOU, MIN_CONFIDENCE));
  });
});

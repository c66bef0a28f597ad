import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { ensureInt8Model, type QuantizeStats } from '../detection/int8-model.ts';
import { scaledFrameSize, type FrameSize } from '../detection/letterbox-geometry.ts';
import { currentFrameDecoder, prepareFrame } from '../detection/letterbox.ts';
import { readOnnxModelInfo } from '../detection/onnx-metadata.ts';
import type { PreparedFrame } from '../detection/types.ts';
import type { MediaRepository } from '../media/media.repository.ts';

export interface CalibrationSettings {
  /** A video whose frames look like the ones the service will see. */
  video: string;
  /** Frames taken from it, spread evenly over its duration. */
  frames: number;
  /** FRAME_SIZE, so calibration frames go through the same scaling as the service's. */
  frameSize: FrameSize | null;
}

export type CalibrationMedia = Pick<MediaRepository, 'probe' | 'extractFrames'>;

/** The calibration video is missing or unusable. */
export class CalibrationError extends Error {
  override name = 'CalibrationError';
}

/**
 * `count` frames spread over the video, extracted and prepared exactly as the service prepares an upload's
 * frames (same scaling, same letterbox), at the model's input size.
 */
export async function calibrationFrames(media: CalibrationMedia, settings: CalibrationSettings, imgsz: [number, number]): Promise<PreparedFrame[]> {
  const probe = await media.probe(settings.video);
  if (!probe.ok) throw new CalibrationError(`calibration video ${settings.video}: ${probe.message}`);
  const source = { width: probe.video.width, height: probe.video.height };
  const seconds = (probe.video.durationMs ?? 0) / 1000;
  // One frame every duration / count seconds; a video too short for that gives all its frames.
  const fps = seconds > 0 && (probe.video.fps === null || settings.frames / seconds < probe.video.fps) ? settings.frames / seconds : null;
  const to = settings.frameSize ? scaledFrameSize(source, settings.frameSize) : undefined;
  const jpegs: Buffer[] = [];
  await media.extractFrames(settings.video, { fps, jpegQuality: 3, startTimeMs: probe.video.startTimeMs, scale: to && { from: source, to } }, async (frame) => {
    if (jpegs.length < settings.frames) jpegs.push(frame.jpeg);
  });
  if (jpegs.length === 0) throw new CalibrationError(`calibration video ${settings.video} gave no frames`);
  return Promise.all(jpegs.map((jpeg) => prepareFrame(jpeg, imgsz, undefined, source)));
}

/**
 * Names a calibration set: the video's content, how many frames, at what size and decoded by which library
 * (FRAME_DECODER: libjpeg-turbo's fast DCT differs from libvips by a level or two); a change makes the int8
 * model again.
 */
export async function calibrationId(settings: CalibrationSettings): Promise<string> {
  const hash = createHash('sha256');
  try {
    await pipeline(createReadStream(settings.video), hash);
  } catch (error) {
    throw new CalibrationError(`calibration video ${settings.video} cannot be read (set CALIBRATION_VIDEO): ${(error as Error).message}`);
  }
  const size = settings.frameSize ? `${settings.frameSize.width}x${settings.frameSize.height}` : 'source';
  return `video sha256 ${hash.digest('hex')}, ${settings.frames} frames, frame size ${size}, decoded by ${currentFrameDecoder()}`;
}

/**
 * MODEL_PRECISION=int8: the int8 model for `modelPath`, from its cache beside the model, or quantized now on
 * frames of the calibration video (a minute or so for yolov8n on two cores, once per model and calibration set).
 */
export async function int8ModelFor(modelPath: string, media: CalibrationMedia, settings: CalibrationSettings): Promise<{ path: string; quantized?: QuantizeStats }> {
  const { imgsz } = readOnnxModelInfo(await readFile(modelPath));
  return ensureInt8Model({
    modelPath,
    calibrationId: await calibrationId(settings),
    calibrationFrames: () => calibrationFrames(media, settings, imgsz),
  });
}

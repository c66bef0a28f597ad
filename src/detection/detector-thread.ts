/**
 * One lane of a DetectorPool: an ONNX Runtime session on a worker thread of its own, so its run (synchronous
 * in onnxruntime-node) holds this thread and never the process's event loop. Answers detect requests one at
 * a time; the pool never sends a lane a second request before the first is answered.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { errorMessage } from '../errors/error-message.ts';
import { OnnxDetector } from './onnx-detector.ts';
import type { DetectOptions, DetectTimings, PreparedFrame } from './types.ts';

export interface LaneSettings {
  modelPath: string;
  threads: number;
  framesPerRun?: number;
}

export type LaneRequest = { type: 'detect'; id: number; frames: PreparedFrame[]; options: DetectOptions } | { type: 'close' };

export type LaneReply =
  | { type: 'ready'; modelInfo: OnnxDetector['modelInfo']; fixedBatch?: string; floatInput?: string }
  | { type: 'failed'; error: string }
  | { type: 'result'; id: number; detections: Awaited<ReturnType<OnnxDetector['detectBatch']>>; timings: Required<DetectTimings> }
  | { type: 'error'; id: number; error: string };

const port = parentPort;
if (!port) throw new Error('detector-thread.ts runs as a worker thread of a DetectorPool');
const settings = workerData as LaneSettings;
const send = (reply: LaneReply) => port!.postMessage(reply);

async function serve(): Promise<void> {
  let fixedBatch: string | undefined;
  let floatInput: string | undefined;
  let detector: OnnxDetector;
  try {
    detector = await OnnxDetector.create(settings.modelPath, {
      threads: settings.threads,
      framesPerRun: settings.framesPerRun,
      onFixedBatch: (reason) => (fixedBatch = reason),
      onFloatInput: (reason) => (floatInput = reason),
    });
  } catch (error) {
    // Told to the pool as a message (the thread then ends): a model that will not load fails the pool's start.
    send({ type: 'failed', error: errorMessage(error) });
    port!.close();
    return;
  }
  send({ type: 'ready', modelInfo: detector.modelInfo, fixedBatch, floatInput });
  port!.on('message', (request: LaneRequest) => {
    if (request.type === 'close') {
      void detector.close().finally(() => port!.close());
      return;
    }
    const timings: Required<DetectTimings> = { inferenceMs: 0, postprocessMs: 0, runs: 0 };
    // The pixels come in shared memory (see onSharedMemory), which onnxruntime-node refuses as tensor data
    // ("Invalid argument"): one copy into this thread's own memory, a fraction of a ms a frame.
    const frames = request.frames.map((frame) => ({ ...frame, pixels: frame.pixels.slice() }));
    detector.detectBatch(frames, request.options, timings).then(
      (detections) => send({ type: 'result', id: request.id, detections, timings }),
      (error: unknown) => send({ type: 'error', id: request.id, error: errorMessage(error) }),
    );
  });
}

await serve();

/**
 * One lane of a DetectorPool: an ONNX Runtime session on a worker thread of its own, so its run (synchronous
 * in onnxruntime-node) holds this thread and never the process's event loop. Answers detect requests one at
 * a time; the pool never sends a lane a second request before the first is answered.
 */
import { readlinkSync } from 'node:fs';
import path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { errorMessage } from '../errors/error-message.ts';
import { OnnxDetector } from './onnx-detector.ts';
import type { DetectOptions, DetectTimings, PreparedFrame } from './types.ts';

export interface LaneSettings {
  modelPath: string;
  threads: number;
  framesPerRun?: number;
}

/** The frames' pixels are views into one ArrayBuffer, moved to the thread and back (LaneReply's `input`). */
export type LaneRequest = { type: 'detect'; frames: PreparedFrame[]; options: DetectOptions } | { type: 'close' };

export type LaneReply =
  | { type: 'ready'; modelInfo: OnnxDetector['modelInfo']; runFrames: number; fixedBatch?: string; floatInput?: string; osThreadId?: number }
  | { type: 'failed'; error: string }
  | { type: 'result'; detections: Awaited<ReturnType<OnnxDetector['detectBatch']>>; timings: Required<DetectTimings>; input: ArrayBuffer }
  | { type: 'error'; error: string; input: ArrayBuffer };

const port = parentPort;
if (!port) throw new Error('detector-thread.ts runs as a worker thread of a DetectorPool');
const settings = workerData as LaneSettings;
/** This thread's kernel id (Linux), which `top -H`, pidstat and /proc/<pid>/task name it by; undefined elsewhere. */
function osThreadId(): number | undefined {
  try {
    return Number(path.basename(readlinkSync('/proc/thread-self')));
  } catch {
    return undefined;
  }
}

const send = (reply: LaneReply) => port!.postMessage(reply, 'input' in reply ? [reply.input] : []);

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
  send({ type: 'ready', modelInfo: detector.modelInfo, runFrames: detector.runFrames, fixedBatch, floatInput, osThreadId: osThreadId() });
  port!.on('message', (request: LaneRequest) => {
    if (request.type === 'close') {
      void detector.close().finally(() => port!.close());
      return;
    }
    const timings: Required<DetectTimings> = { inferenceMs: 0, postprocessMs: 0, runs: 0 };
    const input = request.frames[0]!.pixels.buffer as ArrayBuffer; // goes back with the answer, for the next call
    detector.detectBatch(request.frames, request.options, timings).then(
      (detections) => send({ type: 'result', detections, timings, input }),
      (error: unknown) => send({ type: 'error', error: errorMessage(error), input }),
    );
  });
}

await serve();

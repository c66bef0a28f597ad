/**
 * Converts a YOLOv8 ONNX export into a TensorFlow.js graph model (model.json + weight shards).
 *
 *   tsx scripts/convert-model.ts [models/yolov8n.onnx] [outDir, default: models/yolov8n_web_model] [--force]
 *
 * Idempotent: re-running on an up-to-date output directory does nothing.
 */
import path from 'node:path';
import { convertOnnxFile } from '../src/detection/tfjs/convert-file.ts';

const args = process.argv.slice(2);
const force = args.includes('--force');
const positional = args.filter((a) => a !== '--force');
const onnxPath = positional[0] ?? 'models/yolov8n.onnx';
const outDir = positional[1] ?? defaultOutDir(onnxPath);

function defaultOutDir(onnx: string): string {
  return path.join(path.dirname(onnx), `${path.basename(onnx, '.onnx')}_web_model`);
}

try {
  const started = performance.now();
  const result = await convertOnnxFile(onnxPath, outDir, { force });
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const what = result.converted ? `converted in ${seconds} s` : 'already up to date';
  console.log(`${onnxPath} -> ${result.modelJson}: ${what} (${result.nodes} nodes, ${(result.weightBytes / 1e6).toFixed(1)} MB of weights)`);
} catch (error) {
  console.error(`convert-model: ${(error as Error).message}`);
  process.exitCode = 1;
}

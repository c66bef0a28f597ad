import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { modelInfoFromMetadata } from '../onnx-metadata.ts';
import { CONVERTER_VERSION, convertOnnxToTfjs } from './convert.ts';
import { readModelJson, writeTfjsModel } from './model-files.ts';
import { readOnnxModel } from './onnx-reader.ts';

export interface ConvertFileResult {
  modelJson: string;
  /** false when outDir already held this ONNX file converted by this converter version. */
  converted: boolean;
  nodes: number;
  weightBytes: number;
}

/**
 * Converts an Ultralytics YOLOv8 ONNX export into a tfjs graph model directory. Idempotent: a directory
 * whose model.json records the same source hash and converter version is left alone (unless `force`).
 */
export async function convertOnnxFile(onnxPath: string, outDir: string, options: { force?: boolean } = {}): Promise<ConvertFileResult> {
  const bytes = await readFile(onnxPath);
  const sourceSha256 = createHash('sha256').update(bytes).digest('hex');
  if (!options.force) {
    const existing = await readModelJson(outDir).catch(() => undefined);
    if (existing && existing.userDefinedMetadata.sourceSha256 === sourceSha256 && existing.convertedBy === CONVERTER_VERSION) {
      const weightBytes = existing.weightsManifest.flatMap((g) => g.weights).reduce((sum, w) => sum + 4 * w.shape.reduce((a, b) => a * b, 1), 0);
      return { modelJson: path.join(outDir, 'model.json'), converted: false, nodes: existing.modelTopology.node.length, weightBytes };
    }
  }
  // The metadata is what makes the result usable as a detector (class names, input size), so it is required.
  const model = readOnnxModel(bytes);
  const converted = convertOnnxToTfjs(model, modelInfoFromMetadata(model.metadata));
  const modelJson = await writeTfjsModel(outDir, converted, { sourceSha256 });
  return { modelJson, converted: true, nodes: converted.modelTopology.node.length, weightBytes: converted.weightData.byteLength };
}

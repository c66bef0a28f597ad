import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { io } from '@tensorflow/tfjs-core';
import type { ConvertedTfjsModel, TfjsModelMetadata } from './convert.ts';
import type { TfWeightSpec } from './tf-graph.ts';

/** tfjs' own converter shards weights at 4 MiB, which keeps each file small enough for any HTTP cache. */
const SHARD_BYTES = 4 * 1024 * 1024;
const SHARD_PATTERN = /^group1-shard\d+of\d+\.bin$/;

export interface ModelJson {
  format: string;
  generatedBy: string;
  convertedBy: string;
  modelTopology: ConvertedTfjsModel['modelTopology'];
  signature: ConvertedTfjsModel['signature'];
  userDefinedMetadata: TfjsModelMetadata & { sourceSha256?: string };
  weightsManifest: { paths: string[]; weights: TfWeightSpec[] }[];
}

/**
 * Writes model.json and its weight shards. Shards go first and model.json last, through a temporary
 * name, so a reader never sees a model.json whose shards are missing; shards of an earlier conversion
 * that the new manifest does not list are removed.
 */
export async function writeTfjsModel(dir: string, model: ConvertedTfjsModel, extraMetadata: { sourceSha256?: string } = {}): Promise<string> {
  await mkdir(dir, { recursive: true });
  const count = Math.max(1, Math.ceil(model.weightData.byteLength / SHARD_BYTES));
  const paths = Array.from({ length: count }, (_, i) => `group1-shard${i + 1}of${count}.bin`);
  for (const [i, name] of paths.entries()) {
    await writeFile(path.join(dir, name), model.weightData.subarray(i * SHARD_BYTES, (i + 1) * SHARD_BYTES));
  }
  const json: ModelJson = {
    format: model.format,
    generatedBy: model.generatedBy,
    convertedBy: model.convertedBy,
    modelTopology: model.modelTopology,
    signature: model.signature,
    userDefinedMetadata: { ...model.userDefinedMetadata, ...extraMetadata },
    weightsManifest: [{ paths, weights: model.weightSpecs }],
  };
  const modelJson = path.join(dir, 'model.json');
  await writeFile(`${modelJson}.tmp`, JSON.stringify(json));
  await rename(`${modelJson}.tmp`, modelJson);
  for (const entry of await readdir(dir)) {
    if (SHARD_PATTERN.test(entry) && !paths.includes(entry)) await rm(path.join(dir, entry));
  }
  return modelJson;
}

export async function readModelJson(dir: string): Promise<ModelJson> {
  const file = path.join(dir, 'model.json');
  let json: ModelJson;
  try {
    json = JSON.parse(await readFile(file, 'utf8')) as ModelJson;
  } catch (error) {
    throw new Error(`cannot read TensorFlow.js model ${file}: ${(error as Error).message}`);
  }
  if (json.format !== 'graph-model' || !json.modelTopology || !Array.isArray(json.weightsManifest)) {
    throw new Error(`${file} is not a TensorFlow.js graph model`);
  }
  return json;
}

/** Loads model.json and its shards into the artifacts tf.loadGraphModel takes through an IOHandler. */
export async function readTfjsModelArtifacts(dir: string): Promise<io.ModelArtifacts> {
  const json = await readModelJson(dir);
  const weightSpecs: TfWeightSpec[] = [];
  const shards: ArrayBuffer[] = [];
  for (const group of json.weightsManifest) {
    weightSpecs.push(...group.weights);
    for (const shard of group.paths) {
      const bytes = await readFile(path.join(dir, shard));
      shards.push(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
    }
  }
  const expected = weightSpecs.reduce((sum, spec) => sum + spec.shape.reduce((a, b) => a * b, 1) * 4, 0);
  const actual = shards.reduce((sum, shard) => sum + shard.byteLength, 0);
  if (expected !== actual) throw new Error(`${dir}: weight shards hold ${actual} bytes, model.json describes ${expected}`);
  return {
    format: json.format,
    generatedBy: json.generatedBy,
    convertedBy: json.convertedBy,
    modelTopology: json.modelTopology,
    signature: json.signature,
    userDefinedMetadata: json.userDefinedMetadata as unknown as Record<string, {}>,
    weightSpecs,
    weightData: shards,
  };
}

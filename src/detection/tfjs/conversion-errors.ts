/** The ONNX graph uses an operator the converter has no translation for. */
export class UnsupportedOnnxOpError extends Error {
  override name = 'UnsupportedOnnxOpError';
  constructor(
    readonly opType: string,
    readonly nodeName: string,
    supported: readonly string[],
  ) {
    super(`cannot convert ONNX node "${nodeName}": operator ${opType} is not supported (the converter handles ${supported.join(', ')})`);
  }
}

/** The operator is supported but this use of it (attribute values, shapes, non-constant parameters) is not. */
export class OnnxConversionError extends Error {
  override name = 'OnnxConversionError';
}

/**
 * The converted graph uses a TensorFlow op that tfjs-converter has no op mapper for, so tf.loadGraphModel
 * could not run it: a converter bug, caught at conversion time rather than when a worker loads the model.
 */
export class UnloadableTfjsOpError extends Error {
  override name = 'UnloadableTfjsOpError';
  constructor(readonly ops: ReadonlyMap<string, readonly string[]>) {
    const list = [...ops].map(([op, nodes]) => `${op} (node${nodes.length > 1 ? 's' : ''} ${nodes.slice(0, 3).map((n) => `"${n}"`).join(', ')}${nodes.length > 3 ? ', ...' : ''})`);
    super(`the converted graph uses TensorFlow op${ops.size > 1 ? 's' : ''} that @tensorflow/tfjs-converter cannot execute: ${list.join('; ')}`);
  }
}

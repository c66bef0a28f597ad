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

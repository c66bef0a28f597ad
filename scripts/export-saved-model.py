"""Exports a TensorFlow SavedModel from a graph model written by scripts/convert-model.ts.

Usage: python export-saved-model.py [--check] WEB_MODEL_DIR OUT_DIR
  --check  exit 0 when OUT_DIR is the export of WEB_MODEL_DIR by this script's version, else 1; needs
           neither TensorFlow nor numpy (scripts/export-saved-model runs it before making its venv).

Run by scripts/export-saved-model with TensorFlow's own Python package (tensorflow-cpu, the wheel whose
libtensorflow scripts/install-tfjs-node stages); the service never runs Python. What it writes has the
layout of an Ultralytics `format=saved_model` export, so the detector's SavedModel path is tested as users
feed it:

- saved_model.pb with the `serve` tag and a `serving_default` signature taking one NHWC float32 input
  `images` [batch, h, w, 3] (0..1, RGB; the batch is dynamic) and returning `output0`
  [batch, 4 + classes, anchors];
- variables/ holding every float weight as a tf.Variable, restored by TensorFlow's loader;
- metadata.yaml with description, stride, imgsz and names, as Ultralytics writes it, plus `export_stamp`:
  the sha256 of the ONNX export, the converter's version and this script's, which makes re-running on an
  up-to-date export a no-op.

model.json's modelTopology is a TensorFlow GraphDef in protobuf's JSON form whose weights (Const nodes)
live in the shards; its ops are TensorFlow ops (the converter checks them against tfjs-converter's op
list), so TensorFlow imports the graph as it is, with one attribute added (see graph_for_import).
"""

import json
import os
import shutil
import sys

# Part of export_stamp: raise it when what this script writes changes, so exports are made again.
EXPORTER_VERSION = "export-saved-model 1"


def export_stamp(model):
    return f"{model['userDefinedMetadata']['sourceSha256']} / {model['convertedBy']} / {EXPORTER_VERSION}"


def stamp_of(out_dir):
    """The export_stamp of OUT_DIR's metadata.yaml, or None."""
    try:
        with open(os.path.join(out_dir, "metadata.yaml")) as f:
            for line in f:
                if line.startswith("export_stamp: "):
                    return yaml_unquote(line[len("export_stamp: "):].strip())
    except FileNotFoundError:
        pass
    return None


def yaml_quote(text):
    return "'" + str(text).replace("'", "''") + "'"


def yaml_unquote(text):
    return text[1:-1].replace("''", "'") if text.startswith("'") and text.endswith("'") else text


def metadata_yaml(meta, stamp, tf_version):
    lines = [
        f"description: {yaml_quote(meta.get('description') or 'YOLOv8 model')}",
        f"author: {yaml_quote(f'vidsense scripts/export-saved-model.py, TensorFlow {tf_version}')}",
        "task: detect",
        f"stride: {int(meta['stride'])}",
        "imgsz:",
        *[f"- {int(v)}" for v in meta["imgsz"]],
        "names:",
        *[f"  {i}: {yaml_quote(name)}" for i, name in enumerate(meta["names"])],
        f"export_stamp: {yaml_quote(stamp)}",
    ]
    return "\n".join(lines) + "\n"


def read_weights(np, web_dir, manifest):
    """The weight arrays of model.json's manifest, by node name, from its concatenated shards."""
    dtypes = {"float32": np.float32, "int32": np.int32}
    data = b"".join(open(os.path.join(web_dir, p), "rb").read() for group in manifest for p in group["paths"])
    weights, offset = {}, 0
    for group in manifest:
        for spec in group["weights"]:
            dtype = np.dtype(dtypes[spec["dtype"]])
            count = int(np.prod(spec["shape"], dtype=np.int64))
            weights[spec["name"]] = np.frombuffer(data, dtype, count, offset).reshape(spec["shape"])
            offset += count * dtype.itemsize
    if offset != len(data):
        raise SystemExit(f"{web_dir}: the shards hold {len(data)} bytes, the manifest describes {offset}")
    return weights


def graph_for_import(tf, np, graph_def, weights):
    """
    The GraphDef with its int32 constants filled in and its float weights turned into placeholders of the
    same dtype and shape, which the serving function feeds from variables through import_graph_def's
    input_map (the weights then live in variables/, as in an onnx2tf/Keras export).
    """
    out = tf.compat.v1.GraphDef()
    out.CopyFrom(graph_def)
    for node in out.node:
        if node.op == "_FusedConv2D" and "TArgs" not in node.attr:
            # TensorFlow's op requires the fused arguments' types; tfjs's GraphDef leaves them out.
            node.attr["TArgs"].list.type.extend([node.attr["T"].type] * node.attr["num_args"].i)
        if node.op != "Const" or node.name not in weights:
            continue
        value = weights[node.name]
        if value.dtype == np.float32:
            node.op = "Placeholder"
            node.ClearField("attr")
            node.attr["dtype"].type = tf.float32.as_datatype_enum
            node.attr["shape"].shape.CopyFrom(tf.TensorShape(value.shape).as_proto())
        else:
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
    return out


def build_module(tf, np, model, weights):
    meta = model["userDefinedMetadata"]
    input_name = meta.get("inputName", "images")
    output_name = meta.get("outputName", "output0")
    from google.protobuf import json_format

    graph_def = graph_for_import(tf, np, json_format.ParseDict(model["modelTopology"], tf.compat.v1.GraphDef()), weights)
    names = sorted(n for n, w in weights.items() if w.dtype == np.float32)
    module = tf.Module()
    # Tracked by the module, so tf.saved_model.save writes them to variables/.
    module.weights = [tf.Variable(weights[n], trainable=False, name=n.replace("/", "__")) for n in names]
    h, w = meta["imgsz"]

    @tf.function(input_signature=[tf.TensorSpec([None, h, w, 3], tf.float32, name="images")])
    def serve(images):
        # The converted graph takes NCHW, as the ONNX export does.
        input_map = {f"{input_name}:0": tf.transpose(images, [0, 3, 1, 2])}
        for name, variable in zip(names, module.weights):
            input_map[f"{name}:0"] = variable.read_value()
        (output,) = tf.graph_util.import_graph_def(graph_def, input_map=input_map, return_elements=[f"{output_name}:0"], name="model")
        return {"output0": tf.identity(output)}

    module.serve = serve
    return module


def main(argv):
    check = argv[:1] == ["--check"]
    args = argv[1:] if check else argv
    if len(args) != 2:
        raise SystemExit("usage: export-saved-model.py [--check] WEB_MODEL_DIR OUT_DIR")
    web_dir, out_dir = args
    with open(os.path.join(web_dir, "model.json")) as f:
        model = json.load(f)
    if model.get("userDefinedMetadata", {}).get("inputLayout") != "NCHW" or not model["userDefinedMetadata"].get("sourceSha256"):
        raise SystemExit(f"{web_dir}/model.json: expected a graph model converted by scripts/convert-model.ts")
    stamp = export_stamp(model)
    up_to_date = stamp_of(out_dir) == stamp and os.path.exists(os.path.join(out_dir, "saved_model.pb"))
    if check:
        sys.exit(0 if up_to_date else 1)
    if up_to_date:
        return

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    module = build_module(tf, np, model, read_weights(np, web_dir, model["weightsManifest"]))
    # Written aside and renamed, so a reader never sees half an export.
    tmp = f"{out_dir}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve})
    with open(os.path.join(tmp, "metadata.yaml"), "w") as f:
        f.write(metadata_yaml(model["userDefinedMetadata"], stamp, tf.__version__))
    shutil.rmtree(out_dir, ignore_errors=True)
    os.rename(tmp, out_dir)


if __name__ == "__main__":
    main(sys.argv[1:])

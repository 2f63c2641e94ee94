"""Weight files of a Keras model: keras_v3 (.keras), keras_hdf5 (.h5), a zipped SavedModel and ONNX.

The SavedModel is written with `keras.export.ExportArchive` and a `serving_default` endpoint
whose input and output keys are the package's tensor ids: TF1-style session loaders
(`tf.compat.v1.saved_model.loader.load`, as deepImageJ/JDLL and bioimageio.core's TF1 path do)
open it and find the tensors by those keys. The ONNX model is converted from the same serving
function by tf2onnx (opset `ONNX_OPSET`, inside the range 6-18 that deepImageJ's JDLL lists for
its ONNX engines), with input and output named like the package's tensors.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

SERVE_TAG = "serve"
SIGNATURE = "serving_default"
ONNX_OPSET = 15


def write_keras_v3(model, path: Path) -> Path:
    model.save(str(path))
    return path


def write_keras_hdf5(model, path: Path) -> Path:
    """Legacy HDF5 (Keras 3 still writes and reads it; bioimageio.core loads it as keras_hdf5)."""
    import logging

    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)  # silence the "legacy format" warning
    try:
        model.save(str(path))
    finally:
        absl.setLevel(level)
    return path


def _serving_function(model, input_id: str, output_id: str, channels_in: int):
    import tensorflow as tf

    spec = tf.TensorSpec((None, None, None, channels_in), tf.float32, name=input_id)

    @tf.function(input_signature=[spec])
    def serve(x):
        return {output_id: model(x, training=False)}

    return serve, spec


def write_onnx(model, path: Path, input_id: str, output_id: str, channels_in: int = 1,
               opset: int = ONNX_OPSET) -> Path:
    """ONNX weights converted by tf2onnx from the serving function (dynamic batch, y and x)."""
    import logging

    import tf2onnx

    serve, spec = _serving_function(model, input_id, output_id, channels_in)
    quiet = logging.getLogger("tf2onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        tf2onnx.convert.from_function(serve, input_signature=[spec], opset=opset, output_path=str(path))
    finally:
        quiet.setLevel(level)
    return path


def run_onnx(path: str | Path, array):
    """Run ONNX weights with onnxruntime on `array` (NHWC float32); returns the first output."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: array})[0]


def write_saved_model_zip(model, path: Path, input_id: str, output_id: str, channels_in: int = 1) -> Path:
    """A zipped SavedModel (files at the zip's root) with a `serving_default` signature."""
    import keras

    folder = path.with_suffix("")
    if folder.exists():
        shutil.rmtree(folder)
    archive = keras.export.ExportArchive()
    archive.track(model)
    serve, _ = _serving_function(model, input_id, output_id, channels_in)
    archive.add_endpoint(SIGNATURE, serve)
    archive.write_out(str(folder), verbose=False)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for root, _, files in os.walk(folder):
            for name in sorted(files):
                full = Path(root) / name
                zf.write(full, full.relative_to(folder).as_posix())
    shutil.rmtree(folder)
    return path


def run_tf1_saved_model(folder: str | Path, array, input_id: str = "input", output_id: str = "output"):
    """Open a SavedModel folder the TF1 way (session + loader) and run it on `array` (NHWC)."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        with tf.compat.v1.Session(graph=graph) as sess:
            meta = tf.compat.v1.saved_model.loader.load(sess, [SERVE_TAG], str(folder))
            sig = meta.signature_def[SIGNATURE]
            return sess.run(sig.outputs[output_id].name, {sig.inputs[input_id].name: array})

"""Weight files of a Keras model: keras_v3 (.keras), keras_hdf5 (.h5) and a zipped SavedModel.

The SavedModel is written with `keras.export.ExportArchive` and a `serving_default` endpoint
whose input and output keys are the package's tensor ids: TF1-style session loaders
(`tf.compat.v1.saved_model.loader.load`, as deepImageJ/JDLL and bioimageio.core's TF1 path do)
open it and find the tensors by those keys.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

SERVE_TAG = "serve"
SIGNATURE = "serving_default"


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


def write_saved_model_zip(model, path: Path, input_id: str, output_id: str, channels_in: int = 1) -> Path:
    """A zipped SavedModel (files at the zip's root) with a `serving_default` signature."""
    import tensorflow as tf
    import keras

    folder = path.with_suffix("")
    if folder.exists():
        shutil.rmtree(folder)
    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = tf.TensorSpec((None, None, None, channels_in), tf.float32, name=input_id)

    @tf.function(input_signature=[spec])
    def serve(x):
        return {output_id: model(x, training=False)}

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

"""Networks, training and prediction: one model per factor.

Keras backend
-------------
Importing this package sets nothing. `require_tensorflow_backend`, through which this package
gets Keras, first sets ``KERAS_BACKEND=tensorflow`` unconditionally (not ``setdefault``; see
`rescale4dl_bmz.process.settings.use_tensorflow_keras`, which entry points call early): a user's
``KERAS_BACKEND=torch`` (or bioimageio.core switching Keras to torch) would otherwise break
StarDist and our SavedModel export. If Keras was already imported with another backend, it
raises instead of training on the wrong one. TensorFlow uses a GPU when it sees one; nothing
needs a GPU.

Python API
----------
``train_model(images, masks, config, out_dir, progress=None, *, names=None, overwrite=False)
-> TrainResult`` trains on in-memory lists of 2D arrays (images of any real dtype; masks are
instance labels, or 0/1/2 labels when ``config.masks_are_semantic``); ``progress(row)`` gets
each epoch's training-log row. Bad input raises `InputError` before training starts.
``train_folder(images_dir, masks_dir, config, out_dir)`` does the same from two folders of
TIFFs paired by name. ``load_model(folder) -> TrainedModel`` with ``.task``, ``.config``,
``.normalize(image)``, ``.predict(image)`` (raw image in; semantic -> uint8 0/1/2 map, instance
-> instance labels; tiled for any size), ``.predict_probabilities(image)`` (U-Net softmax,
H x W x n_labels), ``.keras_model``, ``.receptive_field`` and, for StarDist, ``.stardist`` and
``.thresholds``.

Model folder (MODEL/)
---------------------
Written into a hidden temporary sibling ``.MODEL.<random>.part`` and renamed to MODEL only when
training, thresholds and receptive fields are done: a folder named MODEL is always complete.

- ``config.json``: the resolved `TrainConfig` (task "semantic"|"instance", architecture,
  normalisation percentiles, patch size, batch size, learning rate, budget, factor name,
  pixel size in µm or null, seed, ...). ``TrainConfig.model_validate`` reads it back.
- ``receptive_field.json`` (px at the model's own sampling): ``analytic_px`` (layer
  arithmetic on the built network; U-Net 14·2^depth − 7 = 21/49/105/217, repeated as
  ``formula_px``; StarDist depth 3: 98 at grid 1, 200 at grid 2); ``empirical_px`` (measured:
  width of the input-gradient support of the centre output pixel of a linear, positive copy of
  the network (its wiring, not its trained weights, which can saturate or kill every gradient),
  averaged over the 2^depth pooling phases, equal to ``analytic_px``); ``empirical_max_px``/``empirical_min_px`` (widest
  and narrowest phase; the widest is the true field); ``empirical_extent_px`` (per phase: y and
  x offsets); ``analytic_um`` when the pixel size is known; for StarDist also
  ``stardist_estimate_px`` (StarDist's own impulse-response estimate, an effective field).
  A measurement that fails is recorded as ``analytic_error`` / ``empirical_error`` /
  ``stardist_estimate_error``; the model is kept.
- ``training_log.csv``: one row per epoch (epoch, steps, loss, val_loss, learning_rate, time_s).
- ``cost.json``: wall_time_s, train_time_s, steps, epochs, pixels_seen, n_train, n_val,
  patch_size, batch_size, n_parameters, device, versions.
- ``split.json``: which images (or patches "name@row,col") were used to train and to validate.
- semantic: ``model.keras`` — Keras 3 model, input (None, None, 1) float32 already normalised,
  output softmax (None, None, n_labels).
- instance: ``stardist/`` — a StarDist2D model folder (config.json, weights_best.h5,
  weights_last.h5, thresholds.json with the thresholds optimised on the validation split);
  ``StarDist2D(None, name="stardist", basedir=MODEL)`` loads it.
"""

from __future__ import annotations

import importlib
import sys

from rescale4dl_bmz.process.settings import use_tensorflow_keras

_API = {
    "TrainConfig": "config",
    "make_config": "config",
    "train_model": "training",
    "train_folder": "training",
    "TrainResult": "training",
    "load_model": "store",
    "TrainedModel": "store",
    "build_unet": "unet",
    "patch_size_for_factor": "patches",
    "percentile_normalize": "normalize",
}

__all__ = sorted(_API) + ["require_tensorflow_backend"]


def require_tensorflow_backend():
    """Import and return keras on TensorFlow, refusing a Keras already running on another backend."""
    loaded = sys.modules.get("keras")
    if loaded is not None:
        backend = loaded.backend.backend()
        if backend != "tensorflow":
            raise RuntimeError(f"Keras was imported with the {backend!r} backend before rescale4dl_bmz set it; "
                               "call rescale4dl_bmz.process.settings.use_tensorflow_keras() first or set "
                               "KERAS_BACKEND=tensorflow")
    use_tensorflow_keras()
    import keras

    return keras


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Fitting the two networks: U-Net (Keras `fit` on the seeded batch stream, best weights on
validation) and StarDist (its own `train`, then threshold optimisation), each saved into the
training folder with its receptive-field record. Used by `training.train_model` (one run) and
`rounds` (successive halving, several runs advanced in rounds).
"""

from __future__ import annotations

import gc
import logging
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from rescale4dl_bmz.models.config import TrainConfig
from rescale4dl_bmz.models.patches import Split
from rescale4dl_bmz.models.store import LOG_FILE, UNET_FILE

log = logging.getLogger(__name__)

Progress = Callable[[dict], None]


def training_callbacks(cfg: TrainConfig, tmp: Path, epochs: int, steps: int, progress: Progress | None) -> tuple:
    from rescale4dl_bmz.models.callbacks import EpochLog, StepBudget, keras

    budget = StepBudget(steps)
    extra = [budget]
    if cfg.early_stopping_patience is not None:
        extra.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.early_stopping_patience))
    logger = EpochLog(tmp / LOG_FILE, epochs, budget, progress)
    return budget, logger, extra


def train_unet(split: Split, cfg: TrainConfig, tmp: Path, epochs: int, spe: int, steps: int,
                progress: Progress | None) -> tuple:
    from rescale4dl_bmz.models.augment import batch_stream
    from rescale4dl_bmz.models.callbacks import BestWeights

    model = new_unet(cfg)
    budget, logger, extra = training_callbacks(cfg, tmp, epochs, steps, progress)
    best = BestWeights("val_loss")
    reduce = unet_reduce_lr(cfg)
    x_val, y_val = unet_validation(split)
    stream = batch_stream(np.stack(split.train_x), np.stack(split.train_y), cfg.batch_size, cfg.seed,
                          cfg.augmentation)
    model.fit(stream, steps_per_epoch=spe, epochs=epochs, validation_data=(x_val, y_val), shuffle=False,
              validation_batch_size=cfg.batch_size, callbacks=[reduce, *extra, best, logger], verbose=0)
    stream.close()
    gc.collect()  # finalise TensorFlow's generator iterator while Python is still alive
    rf, n_params = save_unet(model, cfg, tmp, best.best_epoch)
    return logger.rows, budget.steps, rf, None, n_params


def new_unet(cfg: TrainConfig):
    """The compiled U-Net of a run (Adam, sparse categorical cross-entropy)."""
    from rescale4dl_bmz.models.callbacks import keras
    from rescale4dl_bmz.models.unet import build_from_config

    model = build_from_config(cfg.architecture)
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy())
    return model


def unet_reduce_lr(cfg: TrainConfig):
    from rescale4dl_bmz.models.callbacks import keras

    return keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=cfg.reduce_lr_factor,
                                             patience=cfg.reduce_lr_patience, min_lr=cfg.min_learning_rate)


def unet_validation(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """The validation patches as the network's (N, p, p, 1) float32 input and (N, p, p) int32 labels."""
    return np.stack(split.val_x)[..., None].astype(np.float32), np.stack(split.val_y).astype(np.int32)


def save_unet(model, cfg: TrainConfig, tmp: Path, best_epoch: int) -> tuple[dict, int]:
    """Save an uncompiled copy (no optimiser state: input (None, None, 1), output the softmax);
    returns its receptive-field record and parameter count."""
    from rescale4dl_bmz.models.unet import analytic_unet_rf, build_from_config

    clean = build_from_config(cfg.architecture)
    clean.set_weights(model.get_weights())
    clean.save(tmp / UNET_FILE)
    rf = rf_record(clean, cfg)
    rf["formula_px"] = analytic_unet_rf(cfg.architecture.depth)  # 14 * 2^depth - 7
    rf["best_epoch"] = best_epoch + 1
    return rf, int(clean.count_params())


def train_stardist(split: Split, cfg: TrainConfig, tmp: Path, epochs: int, spe: int, steps: int,
                    progress: Progress | None) -> tuple:
    model = new_stardist_run(split, cfg, tmp, epochs, spe)
    budget, logger, extra = training_callbacks(cfg, tmp, epochs, steps, progress)
    model.callbacks += [*extra, logger]
    fit_stardist(model, split, cfg, cfg.seed, epochs, spe)
    return (logger.rows, budget.steps, *finish_stardist(model, split, cfg))


def new_stardist_run(split: Split, cfg: TrainConfig, tmp: Path, epochs: int, spe: int):
    """A fresh StarDist2D in `tmp`, prepared for training (optimiser, its own callbacks)."""
    from rescale4dl_bmz.models.stardist_model import new_stardist, stardist_config

    model = new_stardist(stardist_config(cfg, split.patch_size, epochs, spe), tmp)
    model.prepare_for_training()
    return model


def fit_stardist(model, split: Split, cfg: TrainConfig, seed: int, epochs: int, spe: int) -> None:
    """`model.train` on the split, augmented, quiet."""
    from rescale4dl_bmz.models.augment import augment_pair
    from rescale4dl_bmz.models.stardist_model import quiet

    rng = np.random.default_rng(seed)
    augmenter = (lambda x, y: augment_pair(x, y, rng, cfg.augmentation))  # noqa: E731
    with quiet(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*shuffle=True.*")  # StarDist feeds Keras a generator
        model.train(split.train_x, split.train_y, validation_data=(split.val_x, split.val_y),
                    augmenter=augmenter, seed=seed, epochs=epochs, steps_per_epoch=spe)


def finish_stardist(model, split: Split, cfg: TrainConfig) -> tuple[dict, dict, int]:
    """Optimise the thresholds on the validation split; (receptive field, thresholds, parameters)."""
    from rescale4dl_bmz.models.prediction import stardist_tiles
    from rescale4dl_bmz.models.stardist_model import quiet, stardist_rf_estimate

    log.info("optimising StarDist thresholds on %d validation item(s)", len(split.val_x))
    with quiet(stderr=True):
        largest = tuple(max(x.shape[i] for x in split.val_x) for i in (0, 1))
        tiles = stardist_tiles(largest, max(1024, split.patch_size))
        thresholds = model.optimize_thresholds(split.val_x, split.val_y, nms_threshs=list(cfg.nms_thresholds),
                                               predict_kwargs={"n_tiles": tiles, "show_tile_progress": False})
    rf = rf_record(model.keras_model, cfg)
    try:
        rf["stardist_estimate_px"] = stardist_rf_estimate(model)
    except Exception as exc:  # noqa: BLE001 - a diagnostic must not lose the model
        rf["stardist_estimate_error"] = f"{type(exc).__name__}: {exc}"
    n_params = int(model.keras_model.count_params())
    return rf, {k: float(v) for k, v in thresholds.items()}, n_params


def rf_record(model, cfg: TrainConfig) -> dict:
    """Analytic and measured receptive field of the network (receptive_field.json).

    A diagnostic: it never discards the trained model. Should a measurement fail, the record
    says so (`analytic_error` / `empirical_error`) and training still succeeds.
    """
    from rescale4dl_bmz.models.receptive_field import analytic_receptive_field, empirical_receptive_field

    out: dict = {"analytic_method": "layer arithmetic on the built network (= mean over pooling phases)"}
    try:
        out["analytic_px"] = analytic_receptive_field(model)
    except Exception as exc:  # noqa: BLE001 - a diagnostic must not lose the model
        out["analytic_error"] = f"{type(exc).__name__}: {exc}"
        log.warning("receptive field: layer arithmetic failed (%s); the model is kept", exc)
    try:
        start = out.get("analytic_px", 64) + 4 * cfg.divisor
        out.update(empirical_receptive_field(model, phases=2 ** cfg.architecture.depth, divisor=cfg.divisor,
                                             seed=cfg.seed, start=start))
    except Exception as exc:  # noqa: BLE001
        out["empirical_error"] = f"{type(exc).__name__}: {exc}"
        log.warning("receptive field: the measurement failed (%s); the model is kept", exc)
    if cfg.pixel_size_um is not None and "analytic_px" in out:
        out["analytic_um"] = out["analytic_px"] * cfg.pixel_size_um
    return out

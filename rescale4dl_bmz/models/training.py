"""Train one model (U-Net for the semantic task, StarDist for the instance task) into a folder.

Everything the user can get wrong is checked before the first step (InputError). Training
runs in a hidden temporary folder that is renamed to the model folder at the end. Seeds are
fixed and TensorFlow's op determinism is on during training (by default when no GPU is
visible), so a rerun on CPU gives the same weights.
"""

from __future__ import annotations

import contextlib
import logging
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from rescale4dl_bmz.files.label_arrays import compact_labels
from rescale4dl_bmz.files.text_files import write_json
from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.factors import parse_factor
from rescale4dl_bmz.models.config import TrainConfig
from rescale4dl_bmz.models.normalize import percentile_normalize
from rescale4dl_bmz.models.patches import Split, auto_min_foreground, patch_size_for_factor, split_data
from rescale4dl_bmz.models.fitting import train_stardist, train_unet
from rescale4dl_bmz.models.store import CONFIG_FILE, COST_FILE, RF_FILE, SPLIT_FILE, check_output_folder, staging_folder

log = logging.getLogger(__name__)

Progress = Callable[[dict], None]


@dataclass
class TrainResult:
    """What a finished training run wrote, in memory."""

    folder: Path
    config: TrainConfig  # resolved: patch size, batch size, learning rate, steps per epoch
    history: list = field(default_factory=list)  # one dict per epoch (the training log rows)
    cost: dict = field(default_factory=dict)
    receptive_field: dict = field(default_factory=dict)
    split: dict = field(default_factory=dict)
    thresholds: dict | None = None  # StarDist {"prob", "nms"}

    @property
    def task(self) -> str:
        return self.config.task


# ----------------------------------------------------------------------------- checks

def _check_pairs(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], names: Sequence[str]) -> None:
    if len(images) != len(masks):
        raise InputError(f"{len(images)} images but {len(masks)} masks")
    if not images:
        raise InputError("no training images given")
    for name, im, m in zip(names, images, masks):
        im, m = np.asarray(im), np.asarray(m)
        if im.ndim != 2:
            raise InputError(f"image {name}: expected a 2D image, got shape {im.shape}")
        if m.shape != im.shape:
            raise InputError(f"mask {name}: shape {m.shape} differs from its image {im.shape}")
        if not (np.issubdtype(m.dtype, np.integer) or m.dtype == bool):
            raise InputError(f"mask {name}: labels must be integers, got {m.dtype}")
        if m.size and m.min() < 0:
            raise InputError(f"mask {name}: negative labels (min {m.min()})")


def _training_labels(masks: Sequence[np.ndarray], cfg: TrainConfig, names: Sequence[str]) -> list[np.ndarray]:
    """What the network learns: 0/1/2 maps for the semantic task, instance labels for StarDist."""
    if not any(np.any(m) for m in masks):
        raise InputError("the masks hold no objects (every mask is empty): nothing to learn")
    empty = [n for n, m in zip(names, masks) if not np.any(m)]
    if empty:
        log.warning("%d mask(s) without objects: %s", len(empty), ", ".join(empty[:8]))
    if cfg.task == "instance":
        return [compact_labels(np.asarray(m)) for m in masks]
    if cfg.masks_are_semantic:
        n = cfg.architecture.n_labels
        for name, m in zip(names, masks):
            top = int(np.max(m))
            if top >= n:
                raise InputError(f"mask {name}: value {top} is not a semantic label 0..{n - 1} "
                                 "(instance masks need masks_are_semantic off)")
        return [np.asarray(m, np.uint8) for m in masks]
    from rescale4dl_bmz.data.labels import instance_to_semantic

    return [np.asarray(instance_to_semantic(np.asarray(m), style=cfg.label_style), np.uint8) for m in masks]


def resolve_patch_size(cfg: TrainConfig, min_side: int) -> int:
    """The patch side for this run (explicit, or the same-FOV rule of the factor)."""
    div = cfg.divisor
    if cfg.patch_size is not None:
        if cfg.patch_size > min_side:
            raise InputError(f"patch size {cfg.patch_size} px is larger than the smallest image side ({min_side} px)")
        return cfg.patch_size
    scale = parse_factor(cfg.factor).scale
    margin = 0 if cfg.is_unet else 1
    p = patch_size_for_factor(scale, cfg.base_patch_size, cfg.max_patch_size, min_side, div, margin)
    if p < 2 * div:
        raise InputError(f"images too small for this network: the smallest side is {min_side} px, "
                         f"patches must be at least {2 * div} px and a multiple of {div}")
    return p


def resolve_min_foreground(cfg: TrainConfig, labels: Sequence[np.ndarray]) -> float:
    """The patch foreground threshold of this run: the configured one, or the data-adapted rule."""
    if cfg.min_foreground_fraction == "auto":
        return round(auto_min_foreground(labels), 6)
    return float(cfg.min_foreground_fraction)


def _budget(cfg: TrainConfig, n_train: int) -> tuple[int, int, int]:
    """(epochs, steps_per_epoch, total steps)."""
    spe = cfg.steps_per_epoch or max(1, math.ceil(n_train / cfg.batch_size))
    if cfg.steps is not None:
        spe = min(spe, cfg.steps)
        return math.ceil(cfg.steps / spe), spe, cfg.steps
    return cfg.epochs, spe, cfg.epochs * spe


# ----------------------------------------------------------------------------- entry points

def train_model(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], config: TrainConfig,
                out_dir: str | Path, progress: Progress | None = None, *, names: Sequence[str] | None = None,
                overwrite: bool = False) -> TrainResult:
    """Train on in-memory 2D images and masks; write the model folder `out_dir` atomically.

    `progress(record)` is called after each epoch with the training-log row plus "epochs".
    """
    run = prepare_training(images, masks, config, out_dir, names=names, overwrite=overwrite)
    cfg, split = run.cfg, run.split
    with staging_folder(out_dir, overwrite) as tmp:
        t_train = time.perf_counter()
        with reproducible(cfg):
            if cfg.is_unet:
                out = train_unet(split, cfg, tmp, run.epochs, run.spe, run.steps, progress)
            else:
                out = train_stardist(split, cfg, tmp, run.epochs, run.spe, run.steps, progress)
        rows, done_steps, rf, thresholds, n_params = out
        cost = write_model_files(tmp, run, done_steps, len(rows), rf, n_params, time.perf_counter() - t_train)
    log.info("model written to %s (%.1f s, %d steps)", out_dir, cost["wall_time_s"], done_steps)
    return TrainResult(Path(out_dir), cfg, rows, cost, rf, split.summary(), thresholds)


@dataclass
class PreparedRun:
    """A checked training run before its first step: resolved config, split and budget."""

    cfg: TrainConfig  # resolved: patch size, steps per epoch, determinism, foreground threshold
    split: Split
    epochs: int
    spe: int
    steps: int
    t_start: float  # when preparation began (the cost's wall time counts from here)


def prepare_training(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], config: TrainConfig,
                     out_dir: str | Path, *, names: Sequence[str] | None = None,
                     overwrite: bool = False) -> PreparedRun:
    """Every check, the labels, normalisation, patch size, split and budget of one training run."""
    t_start = time.perf_counter()
    cfg = config.with_defaults()
    names = [str(n) for n in names] if names is not None else [f"image {i}" for i in range(len(images))]
    if len(names) != len(images):
        raise InputError(f"{len(names)} names for {len(images)} images")
    _check_pairs(images, masks, names)
    check_output_folder(out_dir, overwrite)
    labels = _training_labels(masks, cfg, names)
    norm = [percentile_normalize(im, cfg.normalization.low, cfg.normalization.high) for im in images]
    min_side = min(min(im.shape) for im in norm)
    patch = resolve_patch_size(cfg, min_side)
    if cfg.patch_size is None and patch < min(cfg.base_patch_size / parse_factor(cfg.factor).scale, cfg.max_patch_size):
        log.info("patch size %d px: the same-field rule asks for more, but the smallest image side is %d px",
                 patch, min_side)
    min_fg = resolve_min_foreground(cfg, labels)
    split = split_data(norm, labels, patch, fraction=cfg.validation_fraction, seed=cfg.seed,
                       min_fg=min_fg, whole_images=not cfg.is_unet, names=names)
    if split.skipped_images:
        log.info("%d image(s) without a patch of >= %.1f%% foreground take no part in training: %s",
                 len(split.skipped_images), 100 * min_fg, ", ".join(split.skipped_images[:8]))
    if cfg.batch_size > len(split.train_x) and not cfg.is_unet:
        log.info("batch size %d > %d training images: images repeat within a batch", cfg.batch_size, len(split.train_x))
    epochs, spe, steps = _budget(cfg, len(split.train_x))
    deterministic = cfg.deterministic if cfg.deterministic is not None else not _has_gpu()
    cfg = cfg.model_copy(update={"patch_size": patch, "steps_per_epoch": spe, "deterministic": deterministic,
                                 "min_foreground_fraction": min_fg})
    item = "patches" if cfg.is_unet or split.unit == "patch" else "images"
    log.info("training %s (%s, factor %s): %d training / %d validation %s (split by %s), patch %d px, "
             "%d epoch(s) x %d steps", cfg.architecture.kind, cfg.task, cfg.factor, len(split.train_x),
             len(split.val_x), item, split.unit, patch, epochs, spe)
    return PreparedRun(cfg, split, epochs, spe, steps, t_start)


def write_model_files(tmp: Path, run: PreparedRun, done_steps: int, n_epochs: int, rf: dict, n_params: int,
                      train_time: float, extra_cost: dict | None = None) -> dict:
    """config.json, receptive_field.json, split.json and cost.json of a trained model; returns the cost."""
    cfg, split, patch = run.cfg, run.split, run.cfg.patch_size
    cost = {"wall_time_s": round(time.perf_counter() - run.t_start, 3), "train_time_s": round(train_time, 3),
            "steps": done_steps, "epochs": n_epochs, "pixels_seen": int(done_steps * cfg.batch_size * patch ** 2),
            "patch_size": patch, "batch_size": cfg.batch_size, "n_train": len(split.train_x),
            "n_val": len(split.val_x), "n_parameters": n_params, "device": _device(), "versions": _versions(),
            **(extra_cost or {})}
    write_json(tmp / CONFIG_FILE, cfg.model_dump(mode="json"))
    write_json(tmp / RF_FILE, rf)
    write_json(tmp / SPLIT_FILE, split.summary())
    write_json(tmp / COST_FILE, cost)
    return cost


def train_folder(images_dir: str | Path, masks_dir: str | Path, config: TrainConfig, out_dir: str | Path,
                 channel: int | None = None, progress: Progress | None = None, overwrite: bool = False) -> TrainResult:
    """Train on the image/mask pairs of two folders (paired by file name)."""
    from rescale4dl_bmz.files.dataset import Pair, dataset_pixel_size, inspect_dataset, read_pair
    from rescale4dl_bmz.files.folders import ensure_outside

    ensure_outside(out_dir, images_dir, masks_dir)
    infos = inspect_dataset(images_dir, masks_dir, channel)
    if config.pixel_size_um is None:
        size = dataset_pixel_size(infos)
        if size is not None:
            config = config.model_copy(update={"pixel_size_um": size})
    pairs = [read_pair(Pair(i.name, i.image, i.mask), channel) for i in infos]
    return train_model([p[0] for p in pairs], [p[1] for p in pairs], config, out_dir, progress,
                       names=[i.name for i in infos], overwrite=overwrite)


# ----------------------------------------------------------------------------- environment

@contextlib.contextmanager
def reproducible(cfg: TrainConfig):
    """Seed Python, NumPy and TensorFlow; deterministic TF ops during the block (restored after)."""
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    from rescale4dl_bmz.models.callbacks import keras

    keras.utils.set_random_seed(cfg.seed)
    was_on = tf_config.is_op_determinism_enabled()
    if cfg.deterministic and not was_on:
        tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if cfg.deterministic and not was_on:
            tf_config.disable_op_determinism()


def _has_gpu() -> bool:
    from rescale4dl_bmz.models import require_tensorflow_backend

    require_tensorflow_backend()
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _device() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return f"GPU ({len(gpus)})" if gpus else f"CPU ({platform.processor() or platform.machine()})"


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("tensorflow", "tensorflow-cpu", "keras", "stardist", "csbdeep", "numpy"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out

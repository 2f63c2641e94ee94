"""A trained model folder (MODEL/) as one single-input, single-output Keras network to package.

U-Net: MODEL/model.keras as is (softmax over the labels). StarDist: the StarDist2D network in
MODEL/stardist/ with its two outputs (object probability, ray distances) concatenated along
channels, as the spec's `stardist_postprocessing` expects (channel 0 = probability), plus the
thresholds optimised on the validation split (MODEL/stardist/thresholds.json).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from rescale4dl_bmz.errors import InputError

STARDIST_BORDER = 2  # StarDist's default `b` in predict_instances


@dataclass
class Network:
    """What the package needs from a model folder."""

    task: str                       # "semantic" | "instance"
    keras_model: object             # single input (N, H, W, 1), single output
    config: dict                    # MODEL/config.json
    divisor: int                    # tile sides must be multiples of this
    low_percentile: float
    high_percentile: float
    receptive_field_px: float | None
    channel_names: list[str] = field(default_factory=list)
    stardist: dict | None = None    # n_rays, grid, prob_threshold, nms_threshold, b

    @property
    def architecture(self) -> str:
        return "StarDist" if self.task == "instance" else "U-Net"


def _read_json(path: Path) -> dict:
    from rescale4dl_bmz.files.text_files import read_json_object

    return read_json_object(path)


def check_model_folder(model_dir: Path) -> dict:
    """Validate MODEL/ before anything heavy is imported; return its config.json."""
    if not model_dir.is_dir():
        raise InputError(f"{model_dir}: no trained model (folder missing)")
    if not (model_dir / "config.json").is_file():
        raise InputError(f"{model_dir}: not a model folder (config.json missing)")
    config = _read_json(model_dir / "config.json")
    task = config.get("task")
    if task == "semantic":
        if not (model_dir / "model.keras").is_file():
            raise InputError(f"{model_dir}: semantic model without weights (model.keras missing)")
    elif task == "instance":
        sd = model_dir / "stardist"
        if not (sd / "config.json").is_file() or not any((sd / w).is_file() for w in ("weights_best.h5", "weights_last.h5")):
            raise InputError(f"{model_dir}: instance model without a StarDist folder (stardist/config.json, weights_best.h5)")
    else:
        raise InputError(f"{model_dir / 'config.json'}: task {task!r} is not 'semantic' or 'instance'")
    return config


RF_KEYS = ("empirical_max_px", "empirical_px", "analytic_px", "stardist_estimate_px")


def receptive_field(record: dict) -> float | None:
    """The widest scalar RF estimate (px) of a receptive_field.json record, or None."""
    values = [float(record[k]) for k in RF_KEYS
              if isinstance(record.get(k), (int, float)) and math.isfinite(record[k]) and record[k] > 0]
    return max(values) if values else None


def load_network(model_dir: str | Path) -> Network:
    """Load MODEL/ with `rescale4dl_bmz.models.load_model` (see module docstring)."""
    model_dir = Path(model_dir)
    check_model_folder(model_dir)
    from rescale4dl_bmz.models import load_model, require_tensorflow_backend

    keras = require_tensorflow_backend()
    trained = load_model(model_dir)
    cfg = trained.config
    config = cfg.model_dump(mode="json")
    low, high = float(cfg.normalization.low), float(cfg.normalization.high)
    rf = receptive_field(trained.receptive_field)
    if cfg.is_unet:
        model = trained.keras_model
        n = int(model.output_shape[-1])
        names = ["background", "inner", "edge"] if n == 3 else [f"class{i}" for i in range(n)]
        return Network("semantic", model, config, cfg.divisor, low, high, rf, names)
    sd = trained.stardist
    prob, dist = sd.keras_model.outputs
    merged = keras.layers.Concatenate(axis=-1, name="prob_dist")([prob, dist])
    model = keras.Model(sd.keras_model.inputs[0], merged, name="stardist_prob_dist")
    grid = tuple(int(g) for g in sd.config.grid)
    divisor = max(int(p) ** int(sd.config.unet_n_depth) * g for p, g in zip(sd.config.unet_pool, grid))
    t = trained.thresholds
    post = {"n_rays": int(sd.config.n_rays), "grid": grid, "b": STARDIST_BORDER,
            "prob_threshold": float(t["prob"]), "nms_threshold": float(t["nms"])}
    return Network("instance", model, config, divisor, low, high, rf, ["instance"], post)

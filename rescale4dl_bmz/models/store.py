"""The model folder: atomic creation, and loading a trained model for prediction.

The folder format is documented in `rescale4dl_bmz.models` (package docstring).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from rescale4dl_bmz.files.label_arrays import compact_labels
from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.models.config import TrainConfig, config_from_dict
from rescale4dl_bmz.models.normalize import percentile_normalize

CONFIG_FILE = "config.json"
RF_FILE = "receptive_field.json"
LOG_FILE = "training_log.csv"
COST_FILE = "cost.json"
SPLIT_FILE = "split.json"
UNET_FILE = "model.keras"


def check_output_folder(out_dir: str | Path, overwrite: bool = False) -> Path:
    """Refuse an existing non-empty folder (unless `overwrite`) or a file in its place."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise InputError(f"output {out_dir} exists and is not a folder")
        if any(out_dir.iterdir()) and not overwrite:
            raise InputError(f"output folder {out_dir} exists and is not empty; choose another or allow overwriting")
    return out_dir


@contextlib.contextmanager
def staging_folder(out_dir: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a hidden temporary sibling of `out_dir`; rename it onto `out_dir` only on success."""
    out_dir = check_output_folder(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_dir(out_dir.parent, f".{out_dir.name}.", ".part")
    try:
        yield tmp
        if out_dir.exists() and any(out_dir.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
            os.replace(out_dir, old / "model")
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _new_dir(parent: Path, prefix: str, suffix: str) -> Path:
    """A fresh uniquely named folder with the usual (umask) permissions, unlike mkdtemp's 0700."""
    while True:
        path = parent / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def _read_json(path: Path) -> dict:
    from rescale4dl_bmz.files.text_files import read_json_object

    return read_json_object(path, f"{path.parent}: not a trained model folder ({path.name} is missing)")


class TrainedModel:
    """A trained model folder, ready to predict raw images the way training saw them."""

    def __init__(self, folder: Path, config: TrainConfig, receptive_field: dict, network):
        self.folder = Path(folder)
        self.config = config
        self.receptive_field = receptive_field
        self._network = network  # keras.Model (semantic) or StarDist2D (instance)

    @property
    def task(self) -> str:
        return self.config.task

    @property
    def keras_model(self):
        return self._network if self.config.is_unet else self._network.keras_model

    @property
    def stardist(self):
        """The StarDist2D object (instance models only)."""
        if self.config.is_unet:
            raise InputError(f"{self.folder}: a semantic (U-Net) model has no StarDist object")
        return self._network

    @property
    def thresholds(self) -> dict | None:
        if self.config.is_unet:
            return None
        t = self._network.thresholds
        return {"prob": float(t.prob), "nms": float(t.nms)}

    @property
    def overlap_px(self) -> int:
        """Tile overlap for prediction: twice the farthest reach of the receptive field."""
        rf = self.receptive_field
        reach = [abs(v) for e in rf.get("empirical_extent_px") or [] for v in (*e["y"], *e["x"])]
        if reach:
            return 2 * max(reach)
        return int(rf.get("empirical_max_px") or rf.get("analytic_px") or 64) + self.config.divisor

    def normalize(self, image: np.ndarray) -> np.ndarray:
        n = self.config.normalization
        return percentile_normalize(image, n.low, n.high)

    def predict_probabilities(self, image: np.ndarray, tile_size: int = 512) -> np.ndarray:
        """Softmax (H, W, n_labels) of the U-Net for a raw 2D image."""
        if not self.config.is_unet:
            raise InputError(f"{self.folder}: predict_probabilities needs a semantic (U-Net) model")
        from rescale4dl_bmz.models.prediction import predict_tiled

        return predict_tiled(self._network.predict_on_batch, self.normalize(image), self.config.divisor,
                             tile=max(tile_size, 2 * self.overlap_px), overlap=self.overlap_px)

    def predict(self, image: np.ndarray, tile_size: int | None = None) -> np.ndarray:
        """Labels for a raw 2D image: uint8 0..n_labels-1 (semantic) or instance labels."""
        if self.config.is_unet:
            return np.argmax(self.predict_probabilities(image, tile_size or 512), axis=-1).astype(np.uint8)
        from rescale4dl_bmz.models.prediction import predict_stardist

        labels = predict_stardist(self._network, self.normalize(image), tile=tile_size or 1024)
        return compact_labels(np.asarray(labels))

    def __repr__(self) -> str:
        return f"TrainedModel({str(self.folder)!r}, task={self.task!r}, factor={self.config.factor!r})"


def load_model(folder: str | Path) -> TrainedModel:
    """Load a model folder written by `train_model`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"model folder {folder} does not exist")
    config = config_from_dict(_read_json(folder / CONFIG_FILE), str(folder / CONFIG_FILE))
    rf_path = folder / RF_FILE
    rf = _read_json(rf_path) if rf_path.exists() else {}
    if config.is_unet:
        path = folder / UNET_FILE
        if not path.is_file():
            raise InputError(f"{folder}: not a trained semantic model ({UNET_FILE} is missing)")
        from rescale4dl_bmz.models import require_tensorflow_backend

        keras = require_tensorflow_backend()
        try:
            network = keras.models.load_model(path, compile=False)
        except Exception as exc:  # truncated, foreign or damaged file: Keras says "File not found" and worse
            raise InputError(f"{path}: cannot be loaded as a Keras model, the file is damaged, truncated or not "
                             f"a model ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    else:
        from rescale4dl_bmz.models.stardist_model import STARDIST_DIR, load_stardist

        if not (folder / STARDIST_DIR / "config.json").is_file():
            raise InputError(f"{folder}: not a trained instance model ({STARDIST_DIR}/config.json is missing)")
        try:
            network = load_stardist(folder)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"{folder / STARDIST_DIR}: cannot be loaded as a StarDist model, its files are damaged "
                             f"or not a model ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    return TrainedModel(folder, config, rf, network)


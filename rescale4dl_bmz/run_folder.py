"""Reading a finished sweep's run folder (RUN_DIR) for `select`, `plan` and `export`.

Layout (written by the sweep flow)::

    RUN_DIR/run.json         {"task", "pixel_size_um" (original, or null), "factors", "image_shape", "dataset",
                              "test" (held-out image names, optional)}
    RUN_DIR/summary.csv      one row per factor (and grid): factor, scale, grid, iou_mean, status, ...
    RUN_DIR/per_image.csv    one row per factor, grid and image: factor, grid, image, iou, ...
    RUN_DIR/<factor>/model/  the trained model folder
    RUN_DIR/<factor>/images/ the factor's images (test input of an exported package)
    RUN_DIR/figures/*.png    the sweep's figures

Only `run.json` and `summary.csv` are required; every problem is an `InputError` naming the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .errors import InputError
from .factors import parse_factor

TASKS = ("semantic", "instance")
SUMMARY_REQUIRED = ("factor", "iou_mean")
COVER_FIGURES = ("iou_vs_coverage.png", "iou_vs_pixel_coverage.png", "iou_boxplot.png")


@dataclass(frozen=True)
class SweepRun:
    """What a run folder says: the sweep's metadata and its tables."""

    path: Path
    task: str
    pixel_size_um: float | None
    factors: tuple[str, ...]
    image_shape: tuple[int, int] | None
    dataset: str | None
    summary: pd.DataFrame
    per_image: pd.DataFrame | None
    test_images: tuple[str, ...] = ()  # names of the held-out images (run.json "test")

    def factor_dir(self, factor: str) -> Path:
        return self.path / parse_factor(factor).name

    def model_dir(self, factor: str) -> Path:
        return self.factor_dir(factor) / "model"

    def figure(self, names: tuple[str, ...] = COVER_FIGURES) -> Path | None:
        """The first existing figure among `names`, else any PNG in RUN_DIR/figures, else None."""
        folder = self.path / "figures"
        for name in names:
            if (folder / name).is_file():
                return folder / name
        pngs = sorted(folder.glob("*.png")) if folder.is_dir() else []
        return pngs[0] if pngs else None


def check_pixel_size(value: float | None, what: str = "--pixel-size") -> float | None:
    """None, or a positive finite pixel size in µm; anything else is an `InputError`."""
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what}: pixel size {value!r} is not a number") from None
    if not (math.isfinite(v) and v > 0):
        raise InputError(f"{what}: pixel size must be a positive number of micrometres, got {value!r}")
    return v


def load_run(run_dir: str | Path, pixel_size_um: float | None = None) -> SweepRun:
    """Read and validate RUN_DIR; `pixel_size_um` (µm, original sampling) overrides run.json."""
    path = Path(run_dir)
    override = check_pixel_size(pixel_size_um)
    if not path.is_dir():
        raise InputError(f"run folder {path} does not exist or is not a folder")
    meta = _read_run_json(path / "run.json")
    task = meta.get("task")
    if task not in TASKS:
        raise InputError(f"{path / 'run.json'}: task {task!r} is not one of {', '.join(TASKS)}")
    size = override if override is not None else check_pixel_size(meta.get("pixel_size_um"),
                                                                     f"{path / 'run.json'}: pixel_size_um")
    shape = meta.get("image_shape")
    if shape is not None:
        if not (isinstance(shape, (list, tuple)) and len(shape) == 2 and all(isinstance(n, int) and n > 0 for n in shape)):
            raise InputError(f"{path / 'run.json'}: image_shape {shape!r} is not [height, width] in pixels")
        shape = (int(shape[0]), int(shape[1]))
    summary = _read_csv(path / "summary.csv", SUMMARY_REQUIRED, required=True)
    per_image = _read_csv(path / "per_image.csv", ("factor", "image", "iou"), required=False)
    factors = tuple(str(f) for f in meta.get("factors") or summary["factor"].drop_duplicates())
    test = meta.get("test") if isinstance(meta.get("test"), list) else []
    return SweepRun(path, task, size, factors, shape, meta.get("dataset"), summary, per_image,
                    tuple(str(t) for t in test))


def _read_run_json(file: Path) -> dict:
    from .dataset import read_json_object

    return read_json_object(file, f"{file.parent} is not a sweep run folder: {file.name} is missing")


def _read_csv(file: Path, columns: tuple[str, ...], required: bool) -> pd.DataFrame | None:
    from .dataset import read_csv

    if not file.is_file():
        if required:
            raise InputError(f"{file.parent}: {file.name} is missing (has the sweep finished any factor?)")
        return None
    try:
        table = read_csv(file)
    except Exception as exc:  # parser errors of every kind
        raise InputError(f"{file}: cannot be read as CSV ({exc})") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(f"{file}: missing column(s) {', '.join(missing)}")
    try:
        table["factor"] = [parse_factor(f).name for f in table["factor"].astype(str)]
    except InputError as exc:
        raise InputError(f"{file}: {exc}") from None
    return table

"""Folders in, CSV tables out: the IO side of `rescale4dl evaluate` (computation: `evaluation`).

GT_DIR / PRED_DIR are either flat folders of masks (one factor) or folders with one sub-folder
per factor (`og`, `ds2`, `up2`, ...; the original ReScale4DL names `OG`, `downsampling_2`,
`upsampling_2` are understood too). A factor sub-folder holds the masks itself or in a
`gt`/`GT` (ground truth) or `pred`/`prediction`/`Prediction` sub-folder, so one folder laid
out as `<factor>/gt` + `<factor>/pred` can serve as both GT_DIR and PRED_DIR. Masks pair by file
name (stem); every mask needs its partner.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from rescale4dl_bmz.files.folders import has_images, images_by_stem, pair_by_stem
from rescale4dl_bmz.files.images import read_mask, read_pixel_size
from rescale4dl_bmz.files.text_files import write_csv
from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.metrics.tables import evaluate_native, evaluate_pair, per_image_table, per_object_table
from rescale4dl_bmz.factors import Factor, parse_factor
from rescale4dl_bmz.metrics.semantic import check_semantic

log = logging.getLogger(__name__)

GT_SUBFOLDERS = ("gt", "GT", "ground_truth")
PRED_SUBFOLDERS = ("pred", "prediction", "Prediction", "predictions")


@dataclass(frozen=True)
class FactorFolders:
    """Where the GT and predicted masks of one factor lie."""

    factor: Factor
    gt: Path
    pred: Path


# ----------------------------------------------------------------------------- discovery

def factor_from_folder(name: str) -> Factor | None:
    """The factor a folder name stands for (`ds2`, `OG`, `downsampling_2`, ...), else None."""
    n = name.strip().lower()
    for old, new in (("downsampling_", "ds"), ("upsampling_", "up")):
        if n.startswith(old):
            n = new + n[len(old):]
    if not (n == "og" or n[:2] in ("ds", "up") and n[2:].isdigit()):
        return None
    try:
        return parse_factor(n)
    except InputError:
        return None


def _mask_folder(folder: Path, subfolders: Sequence[str]) -> Path:
    if has_images(folder):
        return folder
    for sub in subfolders:
        if (folder / sub).is_dir():
            return folder / sub
    raise InputError(f"{folder} holds no masks and no {'/'.join(subfolders)} sub-folder")


def _factor_dirs(root: Path) -> dict[Factor, Path]:
    found: dict[Factor, Path] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        f = factor_from_folder(sub.name)
        if f is None:
            continue
        if f in found:
            raise InputError(f"{root}: two folders stand for factor {f.name} ({found[f].name}, {sub.name})")
        found[f] = sub
    return found


def discover(gt_dir: str | Path, pred_dir: str | Path, factors: Sequence[Factor] | None = None) -> list[FactorFolders]:
    """The factors to evaluate and their folders (flat folders: one factor, `factors[0]` or og)."""
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    for what, d in (("ground-truth folder", gt_dir), ("prediction folder", pred_dir)):
        if not d.is_dir():
            raise InputError(f"{what} {d} does not exist or is not a folder")
    if has_images(gt_dir):
        if factors and len(factors) > 1:
            raise InputError(f"{gt_dir} is a flat folder (one factor) but --factor names {len(factors)}")
        if not has_images(pred_dir):
            raise InputError(f"{gt_dir} holds masks but the prediction folder {pred_dir} holds none")
        return [FactorFolders(factors[0] if factors else Factor(1.0), gt_dir, pred_dir)]
    gt_f, pred_f = _factor_dirs(gt_dir), _factor_dirs(pred_dir)
    if not gt_f:
        raise InputError(f"{gt_dir} holds neither masks nor factor sub-folders (og, ds2, up2, ...)")
    wanted = list(factors) if factors else sorted(gt_f)
    out = []
    for f in wanted:
        if f not in gt_f:
            raise InputError(f"{gt_dir} has no sub-folder for factor {f.name}")
        if f not in pred_f:
            raise InputError(f"{pred_dir} has no sub-folder for factor {f.name} (ground truth: {gt_f[f]})")
        out.append(FactorFolders(f, _mask_folder(gt_f[f], GT_SUBFOLDERS), _mask_folder(pred_f[f], PRED_SUBFOLDERS)))
    return sorted(out, key=lambda ff: ff.factor)


def pair_gt_pred(gt_folder: str | Path, pred_folder: str | Path) -> list[tuple[str, Path, Path]]:
    """(name, GT file, prediction file) for every mask; a file without its partner is an error."""
    return pair_by_stem(gt_folder, pred_folder, "ground-truth", "prediction")


# ----------------------------------------------------------------------------- reading

def read_labels(path: Path, task: str) -> np.ndarray:
    """A validated mask: whole non-negative numbers; 0/1/2 only for the semantic task."""
    mask = read_mask(path)
    if task == "semantic":
        check_semantic(mask, str(path))
    return mask


def read_gt_pred(gt_path: Path, pred_path: Path, task: str) -> tuple[np.ndarray, np.ndarray]:
    """GT and prediction of one pair; their shapes must agree."""
    gt, pred = read_labels(gt_path, task), read_labels(pred_path, task)
    if gt.shape != pred.shape:
        raise InputError(f"shape mismatch: ground truth {gt_path} is {gt.shape[0]}x{gt.shape[1]} but "
                         f"prediction {pred_path} is {pred.shape[0]}x{pred.shape[1]}")
    return gt, pred


def read_conditions(path: str | Path) -> dict[str, str]:
    """image -> condition from a CSV with columns `image,condition` (a header row is optional)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    except OSError as exc:
        raise InputError(f"conditions table {path} cannot be read ({exc})") from None
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["image", "condition"]:
        rows = rows[1:]
    out: dict[str, str] = {}
    for i, r in enumerate(rows, 1):
        if len(r) < 2 or not r[0].strip() or not r[1].strip():
            raise InputError(f"{path}: row {i} is not 'image,condition': {','.join(r)}")
        out[Path(r[0].strip()).name] = r[1].strip()
    if len(set(out.values())) != 2:
        raise InputError(f"{path}: needs exactly two conditions, found {sorted(set(out.values()))}")
    return out


# ----------------------------------------------------------------------------- the run

def evaluate_folders(gt_dir: str | Path, pred_dir: str | Path, task: str, *,
                     factors: Sequence[Factor] | None = None, native_gt: str | Path | None = None,
                     crop: str = "topleft", pixel_size_um: float | None = None, **kwargs):
    """Evaluate every pair of every factor: (per-object DataFrame, per-image DataFrame).

    `pixel_size_um` is the original pixel size; when None it is read from the original ground
    truth (with `native_gt`) or from each factor's first GT file (divided by the factor).
    `kwargs` go to `evaluation.evaluate_pair` (thresh, min_size, diameter, bytes_per_pixel).
    """
    if pixel_size_um is not None and not pixel_size_um > 0:
        raise InputError(f"pixel size must be positive, got {pixel_size_um}")
    native = images_by_stem(native_gt, "original ground-truth folder") if native_gt is not None else None
    objects: list[dict] = []
    images: list[dict] = []
    for ff in discover(gt_dir, pred_dir, factors):
        pairs = pair_gt_pred(ff.gt, ff.pred)
        size = pixel_size_um
        if size is None and native:
            size = read_pixel_size(next(iter(native.values())))
        if size is None:
            own = read_pixel_size(pairs[0][1])
            size = None if own is None else own / ff.factor.scale
        log.info("evaluating %s: %d pairs (%s vs %s)", ff.factor.name, len(pairs), ff.gt, ff.pred)
        for name, gt_path, pred_path in pairs:
            gt, pred = read_gt_pred(gt_path, pred_path, task)
            rows, row = evaluate_pair(gt, pred, task, name, ff.factor, "sampled", pixel_size_um=size, **kwargs)
            objects += rows
            images.append(row)
            if native is not None:
                if name not in native:
                    raise InputError(f"{gt_path}: no original ground truth with the same name in {native_gt}")
                original = read_labels(native[name], task)
                try:
                    rows, row = evaluate_native(original, pred, task, name, ff.factor, crop, pixel_size_um=size,
                                                **kwargs)
                except InputError as exc:
                    raise InputError(f"{pred_path} vs original {native[name]}: {exc}") from None
                objects += rows
                images.append(row)
    return per_object_table(objects), per_image_table(images)


write_table = write_csv  # the evaluate command's name for it

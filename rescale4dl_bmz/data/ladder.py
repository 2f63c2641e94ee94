"""Rescale a whole annotated dataset over a ladder of factors, one image and one factor at a time.

Layout written under OUT:

    OUT/ladder.json                 settings of the ladder (a rerun with other settings is refused)
    OUT/<factor>/images/<name>.tif  float32 (uncompressed), the factor's pixel size in the TIFF metadata
    OUT/<factor>/masks/<name>.tif   uint16 (uint32 when labels need it, zlib), same pixel size
    OUT/manifest.json, manifest.csv per factor and image: shape, pixel size (null = unknown),
                                    objects, objects vanished since og, split objects, crop box

Every pair is cropped once, to a multiple of the coarsest downsampling step (same box for image and
mask), so every factor covers the same field of view and maps back exactly onto the original grid.
All input is validated before anything is written. Each factor's image and mask are computed and
written in bands of rows (`rescale.image_bands`, `files.band_writer`): a ladder's memory stays
well below its largest output image, and the files hold the same pixels as rescaling whole images.
Files are written atomically, so a rerun skips the outputs that exist (they are complete) and only
computes what is missing.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from rescale4dl_bmz import __version__
from rescale4dl_bmz.data.label_change import compare_labels, present_labels
from rescale4dl_bmz.data.rescale import image_bands, mask_bands, rescale_mask, rescale_pair
from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.factors import Factor, coarsest_step, crop_slices, parse_factor, parse_factors
from rescale4dl_bmz.files.band_writer import stored_shape, write_tiff_rows
from rescale4dl_bmz.files.dataset import ItemInfo, Pair, dataset_pixel_size, inspect_dataset, read_pair
from rescale4dl_bmz.files.folders import ensure_outside
from rescale4dl_bmz.files.images import read_mask
from rescale4dl_bmz.files.text_files import write_json, write_text
from rescale4dl_bmz.vocabulary import MODES

__all__ = ["build_ladder", "write_factor", "crop_box", "rescale_pair", "SETTINGS_FILE"]

log = logging.getLogger(__name__)

SETTINGS_FILE = "ladder.json"
BAND_BYTES = 32 * 2**20  # each factor's image is computed and written in bands of about this size
CSV_COLUMNS = ("factor", "scale", "name", "height", "width", "pixel_size_um", "objects", "objects_og",
               "vanished", "split", "crop_y0", "crop_y1", "crop_x0", "crop_x1", "mode", "image", "mask")


def crop_box(shape: Sequence[int], multiple: int, anchor: str = "topleft") -> dict:
    """The crop of one pair as {'y': [y0, y1], 'x': [x0, x1]} in original pixels (end exclusive)."""
    ys, xs = crop_slices(shape, multiple, anchor)
    return {"y": [ys.start, ys.stop], "x": [xs.start, xs.stop]}


def _factor_paths(out: Path, factor: Factor, name: str) -> tuple[Path, Path]:
    base = out / factor.name
    return base / "images" / f"{name}.tif", base / "masks" / f"{name}.tif"


def _read_cropped(info: ItemInfo, box: dict, channel: int | None) -> tuple[np.ndarray, np.ndarray]:
    image, mask = read_pair(Pair(info.name, info.image, info.mask), channel)
    (y0, y1), (x0, x1) = box["y"], box["x"]
    return image[y0:y1, x0:x1], mask[y0:y1, x0:x1]


def write_factor(infos: Sequence[ItemInfo], out: str | Path, factor: Factor | str | float, *, multiple: int,
                 mode: str = "aligned", crop_anchor: str = "topleft", channel: int | None = None) -> list[dict]:
    """Rescale and write every pair of a validated dataset at one factor; one manifest row per pair.

    `infos` come from `dataset.inspect_dataset` (their pixel sizes already hold any override);
    `multiple` is the crop multiple of the whole ladder (its coarsest step), so that every factor
    sees the same field of view. Pairs whose two files already exist are not recomputed.
    This is the coarse per-factor unit a workflow (e.g. one Prefect task per factor) calls.
    """
    factor = parse_factor(factor)
    if factor.is_down and multiple % factor.step:
        raise InputError(f"crop multiple {multiple} is not a multiple of {factor.name}'s step {factor.step}")
    out = Path(out)
    pixel = factor.pixel_size(dataset_pixel_size(infos))
    rows, t0, written = [], time.perf_counter(), 0
    for info in infos:
        box = crop_box(info.shape, multiple, crop_anchor)
        image_path, mask_path = _factor_paths(out, factor, info.name)
        if image_path.exists() and mask_path.exists():
            og_mask = _read_cropped_mask(info, box)
            mask = read_mask(mask_path) if factor.is_down else og_mask
            shape = tuple(mask.shape) if factor.is_down else stored_shape(mask_path)
        else:
            image, og_mask = _read_cropped(info, box, channel)
            shape, mask = _write_rescaled(image_path, mask_path, image, og_mask, factor, mode, pixel)
            del image
            written += 1
        rows.append(_row(factor, info.name, shape, pixel, og_mask, mask, box, mode,
                         image_path.relative_to(out), mask_path.relative_to(out)))
        del og_mask, mask
    vanished = sum(r["vanished"] for r in rows)
    log.info("%-4s %d image(s) (%d written, %d kept), pixel size %s, %d object(s), %d vanished, %.1f s",
             factor.name, len(rows), written, len(rows) - written, _fmt_um(pixel),
             sum(r["objects"] for r in rows), vanished, time.perf_counter() - t0)
    return rows


def _write_rescaled(image_path: Path, mask_path: Path, image: np.ndarray, og_mask: np.ndarray, factor: Factor,
                    mode: str, pixel: float | None) -> tuple[tuple[int, int], np.ndarray]:
    """Write one pair at one factor, computed and written in bands (no output image is ever whole).

    Returns the output shape and the mask to count objects on: the rescaled mask when downsampling
    (at most a quarter of og), og's otherwise (replication keeps every object as it is).
    """
    bands = image_bands(image, factor, mode, BAND_BYTES)
    write_tiff_rows(image_path, bands.shape, bands.dtype, bands, pixel)
    if factor.is_down:
        mask = rescale_mask(og_mask, factor, mode)
        write_tiff_rows(mask_path, mask.shape, mask.dtype, [mask], pixel)
        return bands.shape, mask
    labels = mask_bands(og_mask, factor, mode, BAND_BYTES)
    write_tiff_rows(mask_path, labels.shape, labels.dtype, labels, pixel)
    return bands.shape, og_mask


def _read_cropped_mask(info: ItemInfo, box: dict) -> np.ndarray:
    mask = read_mask(info.mask)
    (y0, y1), (x0, x1) = box["y"], box["x"]
    return mask[y0:y1, x0:x1]


def _row(factor: Factor, name: str, shape: tuple, pixel: float | None, og_mask: np.ndarray, mask: np.ndarray,
         box: dict, mode: str, image_rel: Path, mask_rel: Path) -> dict:
    """One manifest row: what the factor did to this pair's objects."""
    # Up and og: `mask` is og's (replication keeps every object and its connectivity).
    change = compare_labels(og_mask, mask)
    return {
        "factor": factor.name, "scale": factor.scale, "name": name, "shape": list(shape),
        "pixel_size_um": pixel, "objects": change.objects, "objects_og": int(present_labels(og_mask).size),
        "vanished": len(change.vanished), "vanished_labels": list(change.vanished), "split": change.split,
        "crop": box, "mode": mode, "image": image_rel.as_posix(), "mask": mask_rel.as_posix(),
    }


def _fmt_um(pixel: float | None) -> str:
    return "unknown" if pixel is None else f"{pixel:.6g} um"


def _settings(infos: Sequence[ItemInfo], mode: str, anchor: str, multiple: int, channel: int | None,
              pixel: float | None) -> dict:
    return {"mode": mode, "crop_anchor": anchor, "crop_multiple": multiple, "channel": channel,
            "pixel_size_um": pixel, "items": [{"name": i.name, "shape": list(i.shape)} for i in infos]}


def _check_out(out: Path, settings: dict) -> None:
    """OUT must be new, empty, or a ladder built with the same settings (then the run resumes)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError(f"output {out} exists and is not a folder")
    stored = out / SETTINGS_FILE
    if stored.exists():
        try:
            previous = json.loads(stored.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{stored}: cannot be read ({exc}); delete it or choose another --out") from None
        previous = {k: previous.get(k) for k in settings}
        if previous != json.loads(json.dumps(settings)):
            changed = ", ".join(k for k in settings if previous.get(k) != json.loads(json.dumps(settings[k])))
            raise InputError(f"{out} holds a ladder built with other settings ({changed}); "
                             "choose another --out or delete it")
    elif any(out.iterdir()):
        raise InputError(f"output folder {out} is not empty and holds no ladder ({SETTINGS_FILE}); "
                         "choose another --out")


def build_ladder(images_dir: str | Path, masks_dir: str | Path, out: str | Path,
                 factors: Sequence[Factor | str | float] | str | None = None, mode: str = "aligned",
                 pixel_size_um: float | None = None, channel: int | None = None,
                 crop_anchor: str = "topleft") -> dict:
    """Validate the whole dataset, then write every factor of the ladder and the manifest.

    Returns the manifest (also written as OUT/manifest.json and OUT/manifest.csv). Raises
    `InputError` before writing anything when any input is unusable.
    """
    factors = parse_factors(factors)
    if mode not in MODES:
        raise InputError(f"rescale mode {mode!r} is not one of {', '.join(MODES)}")
    crop_slices((1, 1), 1, crop_anchor)  # validates the anchor
    out = Path(out)
    ensure_outside(out, images_dir, masks_dir)
    multiple = coarsest_step(factors)
    infos = inspect_dataset(images_dir, masks_dir, channel=channel, pixel_size_um=pixel_size_um,
                            min_side=multiple)
    pixel = dataset_pixel_size(infos)
    settings = _settings(infos, mode, crop_anchor, multiple, channel, pixel)
    _check_out(out, settings)

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / SETTINGS_FILE, {"tool": "rescale4dl_bmz", "version": __version__, **settings})
    log.info("ladder %s over %d pair(s), crop to multiples of %d (%s), mode %s -> %s",
             " ".join(f.name for f in factors), len(infos), multiple, crop_anchor, mode, out)
    rows: list[dict] = []
    for factor in factors:
        rows += write_factor(infos, out, factor, multiple=multiple, mode=mode, crop_anchor=crop_anchor,
                             channel=channel)
    pairs = [{"name": i.name, "image": str(i.image), "mask": str(i.mask), "shape": list(i.shape),
              "objects": i.n_objects, "crop": crop_box(i.shape, multiple, crop_anchor)} for i in infos]
    manifest = {
        "tool": "rescale4dl_bmz", "version": __version__,
        "images_dir": str(Path(images_dir).resolve()), "masks_dir": str(Path(masks_dir).resolve()),
        "factors": [f.name for f in factors], **settings, "pairs": pairs, "rows": rows,
    }
    write_json(out / "manifest.json", manifest)
    write_text(out / "manifest.csv", manifest_csv(rows))
    return manifest


def manifest_csv(rows: Sequence[dict]) -> str:
    """The manifest rows as CSV text (one line per factor and image; empty pixel size = unknown)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({
            **{k: r[k] for k in ("factor", "scale", "name", "objects", "objects_og", "vanished", "split",
                                 "mode", "image", "mask")},
            "height": r["shape"][0], "width": r["shape"][1],
            "pixel_size_um": "" if r["pixel_size_um"] is None else r["pixel_size_um"],
            "crop_y0": r["crop"]["y"][0], "crop_y1": r["crop"]["y"][1],
            "crop_x0": r["crop"]["x"][0], "crop_x1": r["crop"]["x"][1],
        })
    return buf.getvalue()


def summarize(rows: Sequence[dict]) -> list[dict]:
    """One line per factor: pixel size, image shapes, objects, vanished and split objects."""
    table: dict[str, dict] = {}
    for r in rows:
        t = table.setdefault(r["factor"], {"factor": r["factor"], "pixel_size_um": r["pixel_size_um"],
                                           "shapes": set(), "images": 0, "objects": 0, "vanished": 0,
                                           "split": 0})
        t["shapes"].add(tuple(r["shape"]))
        t["images"] += 1
        for k in ("objects", "vanished", "split"):
            t[k] += r[k]
    return list(table.values())

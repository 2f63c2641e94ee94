"""File-level ImageJ runs: start one ImageJ, run our macro on files, stop it."""

from __future__ import annotations

from pathlib import Path

from rescale4dl_bmz.vocabulary import LABEL_STYLES
from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.files.folders import ensure_outside, images_by_stem
from rescale4dl_bmz.files.images import read_mask, read_pixel_size, write_tiff
from rescale4dl_bmz.imagej.bridge import DEFAULT_TIMEOUT, ImageJ, labels_for_imagej


def labels_folder_imagej(masks_dir: str | Path, out_dir: str | Path, style: str = "deepbacs", *,
                         fiji: str | Path | None = None, timeout: float = DEFAULT_TIMEOUT) -> list[Path]:
    """Every mask of a folder -> OUT/<name>.tif (uint8 0/1/2, pixel size kept), one ImageJ for all.

    All masks are validated before anything is written; OUT may not lie inside MASKS.
    """
    if style not in LABEL_STYLES:
        raise InputError(f"unknown edge style {style!r}; choose one of {', '.join(LABEL_STYLES)}")
    ensure_outside(out_dir, masks_dir)
    files = list(images_by_stem(masks_dir, "mask folder").values())  # outputs are named by stem
    for f in files:
        labels_for_imagej(read_mask(f), str(f))  # validation only: one mask in memory at a time
    written = []
    with ImageJ(fiji, timeout=timeout) as ij:
        for f in files:
            semantic = ij.instance_to_semantic(read_mask(f), style, name=str(f))
            written.append(write_tiff(Path(out_dir) / f"{f.stem}.tif", semantic, read_pixel_size(f)))
    return written


def resample_to_model_pixel_size(image_path: str | Path, out_path: str | Path, target_um: float, *,
                                 source_um: float | None = None, fiji: str | Path | None = None,
                                 timeout: float = DEFAULT_TIMEOUT) -> Path:
    """One image to the model's pixel size with our Fiji macro (starts and stops ImageJ)."""
    with ImageJ(fiji, timeout=timeout) as ij:
        return ij.resample_file(image_path, out_path, target_um, source_um)

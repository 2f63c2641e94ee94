"""The dataset of a run: images paired with their instance masks, validated before any work starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from rescale4dl_bmz.files.label_arrays import check_instance_mask
from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.files.folders import pair_by_stem
from rescale4dl_bmz.files.images import read_image, read_mask, read_pixel_size


@dataclass(frozen=True)
class Pair:
    """An image and its instance mask, paired by file stem."""

    name: str
    image: Path
    mask: Path


def pair_files(images_dir: str | Path, masks_dir: str | Path) -> list[Pair]:
    """Pair images with masks by file name (stem). Every file must have a partner."""
    return [Pair(*files) for files in pair_by_stem(images_dir, masks_dir, "image", "mask")]


@dataclass(frozen=True)
class ItemInfo:
    """What validation learned about one pair, without keeping its pixels."""

    name: str
    image: Path
    mask: Path
    shape: tuple[int, int]
    pixel_size_um: float | None
    n_objects: int


def read_pair(pair: Pair, channel: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Image (2D, original dtype) and instance mask of one pair; shapes must agree."""
    image = read_image(pair.image, channel)
    mask = read_mask(pair.mask)
    if image.shape != mask.shape:
        raise InputError(f"{pair.mask}: mask shape {mask.shape} differs from image {pair.image} shape {image.shape}")
    return image, mask


def inspect_dataset(images_dir: str | Path, masks_dir: str | Path, channel: int | None = None,
                    pixel_size_um: float | None = None, min_side: int = 1) -> list[ItemInfo]:
    """Validate every pair before any work starts (one pair in memory at a time).

    `pixel_size_um` overrides the files' metadata; `min_side` is the smallest side an image may
    have (the coarsest downsampling step, so every factor keeps at least one pixel).
    """
    if pixel_size_um is not None and not (np.isfinite(pixel_size_um) and pixel_size_um > 0):
        raise InputError(f"pixel size must be a positive finite number of µm, got {pixel_size_um}")
    infos = []
    for pair in pair_files(images_dir, masks_dir):
        image, mask = read_pair(pair, channel)
        check_instance_mask(mask, f"{pair.mask}: mask")
        if min(image.shape) < min_side:
            raise InputError(f"{pair.image}: image {image.shape} is smaller than the coarsest factor ({min_side} px)")
        size = pixel_size_um if pixel_size_um is not None else read_pixel_size(pair.image)
        n = int(np.count_nonzero(np.unique(mask)))
        infos.append(ItemInfo(pair.name, pair.image, pair.mask, image.shape, size, n))
    return infos


def dataset_pixel_size(infos: Sequence[ItemInfo]) -> float | None:
    """The dataset's pixel size: the files must agree (to 0.1 %) or the user must override it."""
    sizes = {i.pixel_size_um for i in infos}
    known = [s for s in sizes if s is not None]
    if not known:
        return None
    if None in sizes or max(known) > min(known) * 1.001:
        detail = ", ".join(f"{i.image.name}: {i.pixel_size_um}" for i in infos[:6])
        raise InputError(f"images disagree on their pixel size ({detail}, ...); set one with --pixel-size")
    return known[0]

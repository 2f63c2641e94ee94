"""The embedded demo dataset: the nuclei image and mask shipped inside the stardist wheel.

The 512x512 fluorescence image (125 labelled nuclei) is cut into four 256x256 quadrants so a
sweep has images to train on and an image to test on, with no download.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rescale4dl_bmz.files.images import write_tiff

QUADRANTS = ("q1", "q2", "q3", "q4")


def nuclei_sample() -> tuple[np.ndarray, np.ndarray]:
    """(image uint16, instance mask) of stardist's 2D nuclei test image (offline, in the wheel)."""
    from stardist.data import test_image_nuclei_2d

    image, mask = test_image_nuclei_2d(return_mask=True)
    return np.asarray(image), np.asarray(mask)


def quadrants(array: np.ndarray) -> list[np.ndarray]:
    h, w = array.shape[0] // 2, array.shape[1] // 2
    return [array[:h, :w], array[:h, w:], array[h:, :w], array[h:, w:]]


def write_demo_dataset(folder: str | Path) -> tuple[Path, Path]:
    """Write `images/` and `masks/` (four quadrants) under `folder`; returns both folders."""
    folder = Path(folder)
    images_dir, masks_dir = folder / "images", folder / "masks"
    image, mask = nuclei_sample()
    for name, img, msk in zip(QUADRANTS, quadrants(image), quadrants(mask)):
        if not (images_dir / f"{name}.tif").exists():
            write_tiff(images_dir / f"{name}.tif", np.ascontiguousarray(img))
        if not (masks_dir / f"{name}.tif").exists():
            write_tiff(masks_dir / f"{name}.tif", np.ascontiguousarray(msk))
    return images_dir, masks_dir

"""Sample images of a package as ImageJ TIFFs that Fiji opens: channels as a stack (hyperstack
with C channels), float32/uint16 only, and the spatial calibration (µm per pixel) when known.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def imagej_array(array: np.ndarray) -> np.ndarray:
    """A dtype ImageJ 1.x opens exactly: uint8/uint16 kept, other integers as uint16 (or float32), floats as float32."""
    a = np.asarray(array)
    if a.dtype in (np.uint8, np.uint16, np.float32):
        return a
    if np.issubdtype(a.dtype, np.integer):
        if a.size == 0 or (a.min() >= 0 and a.max() <= np.iinfo(np.uint16).max):
            return a.astype(np.uint16)
    return a.astype(np.float32)


def write_imagej_tiff(path: Path, array: np.ndarray, pixel_size_um: float | None, channel_last: bool = False) -> Path:
    """2D (y, x) or (y, x, c) with `channel_last` -> an ImageJ hyperstack TIFF, calibrated when known."""
    import tifffile

    a = imagej_array(array)
    axes = "YX"
    if a.ndim == 3 and channel_last:
        a, axes = np.ascontiguousarray(np.moveaxis(a, -1, 0)), "CYX"
    elif a.ndim != 2:
        raise ValueError(f"expected a 2D image or (y, x, c), got shape {a.shape}")
    metadata = {"axes": axes}
    kwargs = {}
    if pixel_size_um is not None:
        metadata["unit"] = "micron"
        kwargs["resolution"] = (1.0 / pixel_size_um, 1.0 / pixel_size_um)
    if axes == "CYX":
        metadata["mode"] = "composite" if a.shape[0] <= 7 else "grayscale"
    tifffile.imwrite(path, a, imagej=True, metadata=metadata, **kwargs)
    return path


def write_samples(folder: Path, test_input: np.ndarray, test_output: np.ndarray,
                  pixel_size_um: float | None) -> tuple[Path, Path]:
    """sample_input.tif (the raw test crop) and sample_output.tif (its expected output)."""
    sin = write_imagej_tiff(folder / "sample_input.tif", test_input[0, ..., 0], pixel_size_um)
    out = test_output[0]
    sout = write_imagej_tiff(folder / "sample_output.tif", out if out.shape[-1] > 1 else out[..., 0],
                             pixel_size_um, channel_last=out.shape[-1] > 1)
    return sin, sout

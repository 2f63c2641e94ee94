"""TIFF files written a band of rows at a time, so that no output image is ever whole in memory.

The files carry the ImageJ metadata and pixel size of `images.write_tiff` (one rule: `tiff_options`) (unit 'um' and the
resolution tags; uint32 labels, which ImageJ cannot hold, as a plain TIFF with a resolution in
centimetres). Float images are stored uncompressed: their noise compresses by about 15 % at
several times the cost of writing the bytes. Integer masks are long runs of one label: zlib shrinks
them about 100-fold for about the cost of writing them uncompressed, so they keep it (in strips of
about 256 KB, compressed one strip at a time). An uncompressed image over 4 GB is a BigTIFF with
the same metadata (tifffile and Fiji's Bio-Formats read it; classic TIFF offsets cannot reach past
4 GB). Writes are atomic (`atomic.atomic_path`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from rescale4dl_bmz.files.atomic import atomic_path

STRIP_BYTES = 262144  # compressed strips of about 256 KB, as tifffile makes them
CLASSIC_TIFF_LIMIT = 2**32 - 2**25  # image bytes beyond which tifffile itself switches to BigTIFF


def tiff_options(dtype: np.dtype, pixel_size_um: float | None) -> tuple[bool, dict]:
    """Whether the file is an ImageJ TIFF, and tifffile's `write` arguments for its metadata."""
    if np.dtype(dtype) == np.uint32:  # ImageJ hyperstacks cannot hold uint32: resolution tags only
        if pixel_size_um is None:
            return False, {"metadata": None}
        per_cm = 1e4 / pixel_size_um
        return False, {"metadata": None, "resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}
    if pixel_size_um is None:
        return True, {"metadata": {"axes": "YX"}}
    per_um = 1.0 / pixel_size_um
    return True, {"metadata": {"unit": "um", "axes": "YX"}, "resolution": (per_um, per_um)}


def write_tiff_rows(path: str | Path, shape: Sequence[int], dtype: np.dtype | type,
                    rows: Iterable[np.ndarray], pixel_size_um: float | None = None,
                    compress: bool | None = None) -> Path:
    """Write a 2D image given as bands of whole rows (top to bottom) as one TIFF.

    `compress` defaults to zlib for integer images and none for floats. Only one band (and one
    compressed strip) is held at a time; the bands must add up to `shape` exactly.
    """
    import tifffile

    height, width = (int(n) for n in shape)
    dtype = np.dtype(dtype)
    if compress is None:
        compress = dtype.kind in "iu"
    imagej, options = tiff_options(dtype, pixel_size_um)
    checked = _checked_rows(rows, height, width, dtype)
    if compress:
        strip_rows = max(1, STRIP_BYTES // max(width * dtype.itemsize, 1))
        options.update(compression="zlib", rowsperstrip=strip_rows,
                       data=_zlib_strips(checked, strip_rows, tifffile.TIFF.COMPRESSORS[8]))
        bigtiff = False
    else:
        options.update(data=checked)
        bigtiff = height * width * dtype.itemsize > CLASSIC_TIFF_LIMIT
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*nonconformant BigTIFF ImageJ")
        with tifffile.TiffWriter(tmp, bigtiff=bigtiff, imagej=imagej) as tif:
            tif.write(shape=(height, width), dtype=dtype, **options)
    return Path(path)


def _checked_rows(rows: Iterable[np.ndarray], height: int, width: int, dtype: np.dtype) -> Iterator[np.ndarray]:
    """The bands as C-contiguous arrays of `dtype`; an error when they do not make up the image."""
    done = 0
    for band in rows:
        if band.ndim != 2 or band.shape[1] != width or band.dtype != dtype or done + band.shape[0] > height:
            raise ValueError(f"band {band.shape} {band.dtype} after row {done} does not fit a "
                             f"({height}, {width}) {dtype} image")
        done += band.shape[0]
        if band.shape[0]:
            yield np.ascontiguousarray(band)
    if done != height:
        raise ValueError(f"bands hold {done} rows of a {height}-row image")


def _zlib_strips(bands: Iterable[np.ndarray], strip_rows: int, encode) -> Iterator[bytes]:
    """Compressed strips of `strip_rows` rows (the last may be shorter) cut from bands of any height."""
    pending: np.ndarray | None = None  # the start of a strip that the next band completes
    for band in bands:
        if pending is not None:
            need = strip_rows - pending.shape[0]
            pending = np.concatenate([pending, band[:need]])
            band = band[need:]
            if pending.shape[0] < strip_rows:
                continue
            yield encode(pending)
            pending = None
        whole = band.shape[0] // strip_rows * strip_rows
        for start in range(0, whole, strip_rows):
            yield encode(band[start: start + strip_rows])
        if whole < band.shape[0]:
            pending = band[whole:].copy()
    if pending is not None:
        yield encode(pending)


def stored_shape(path: str | Path) -> tuple[int, ...]:
    """The shape of a TIFF's first image, read from its header without its pixels."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return tuple(tif.series[0].shape)

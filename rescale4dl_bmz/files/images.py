"""Image and mask files: validated 2D arrays in, pixel sizes from metadata, ImageJ TIFFs out.

Every reader validates what it reads and raises `InputError` naming the file and the problem;
`write_tiff` writes atomically (`files.atomic`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rescale4dl_bmz.files.label_arrays import check_instance_mask, check_labels, compact_labels
from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.files.units import METRIC_UNIT_IN_UM
from rescale4dl_bmz.files.atomic import atomic_path


# ----------------------------------------------------------------------------- reading

def _read_raw(path: Path) -> tuple[np.ndarray, str]:
    """The pixel array and its axes string (tifffile's letters, e.g. 'YX', 'YXS', 'CYX')."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                return series.asarray(), series.axes
        import imageio.v3 as iio

        arr = np.asarray(iio.imread(path))
        axes = "YX" if arr.ndim == 2 else "YXS"
        return arr, axes
    except InputError:
        raise
    except Exception as exc:  # any decoder error: unreadable / corrupt file
        raise InputError(f"{path}: cannot be read as an image ({type(exc).__name__}: {exc})") from None


def _squeeze_axes(arr: np.ndarray, axes: str) -> tuple[np.ndarray, str]:
    keep = [i for i, n in enumerate(arr.shape) if n != 1 or axes[i] in "YX"]
    return arr.reshape([arr.shape[i] for i in keep]), "".join(axes[i] for i in keep)


def read_image(path: str | Path, channel: int | None = None) -> np.ndarray:
    """A 2D image. Multichannel/RGB images need `channel`; 3D stacks are refused."""
    path = Path(path)
    arr, axes = _squeeze_axes(*_read_raw(path))
    if arr.ndim == 2:
        if channel not in (None, 0):
            raise InputError(f"{path}: --channel {channel} given but the image has a single channel")
        return _finite(arr, path)
    if arr.ndim > 3 or any(a in axes for a in "ZTQI"):
        raise InputError(f"{path}: is a stack of shape {arr.shape} (axes {axes}); only 2D images are supported")
    cax = next((i for i, a in enumerate(axes) if a in "CS"), arr.ndim - 1)
    n = arr.shape[cax]
    if channel is None:
        raise InputError(f"{path}: has {n} channels (shape {arr.shape}); choose one with --channel")
    if not 0 <= channel < n:
        raise InputError(f"{path}: --channel {channel} out of range (the image has {n} channels)")
    return _finite(np.take(arr, channel, axis=cax), path)


def _finite(arr: np.ndarray, path: Path) -> np.ndarray:
    """Refuse NaN or infinite pixels: they poison normalisation and every factor's training."""
    if np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.complexfloating):
        bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise InputError(f"{path}: {bad} of {arr.size} pixels are NaN or infinite")
    elif not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise InputError(f"{path}: unsupported pixel type {arr.dtype}")
    return arr


def read_mask(path: str | Path) -> np.ndarray:
    """A 2D instance (or semantic) mask as an unsigned integer array; values must be integers >= 0."""
    path = Path(path)
    arr, axes = _squeeze_axes(*_read_raw(path))
    if arr.ndim != 2:
        raise InputError(f"{path}: a mask must be 2D, got shape {arr.shape} (axes {axes})")
    return compact_labels(check_labels(arr, f"{path}: mask"))


def read_instance_mask(path: str | Path) -> np.ndarray:
    """`read_mask`, refusing what is not an instance label image (intensity, binary, semantic)."""
    return check_instance_mask(read_mask(path), str(path))


def read_pixel_size(path: str | Path) -> float | None:
    """Pixel size in µm from ImageJ or OME-TIFF metadata; None when the file does not say."""
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ome and tif.ome_metadata:
                size = _ome_pixel_size(tif.ome_metadata)
                if size is not None:
                    return size
            page = tif.pages[0]
            res = page.tags.get("XResolution")
            unit = (tif.imagej_metadata or {}).get("unit") if tif.is_imagej else None
            res_unit = page.tags.get("ResolutionUnit")
    except Exception as exc:
        raise InputError(f"{path}: cannot read TIFF metadata ({exc})") from None
    if res is None:
        return None
    num, den = res.value
    if not num or not den:
        return None
    per_unit = num / den  # pixels per unit
    if unit is None:
        # Plain TIFF: resolution unit 3 = centimetre; inches are not a microscopy calibration.
        if res_unit is not None and int(res_unit.value) == 3 and per_unit != 1:
            return 1e4 / per_unit
        return None
    scale = METRIC_UNIT_IN_UM.get(str(unit).strip().lower().replace("\\u00b5", "µ"))
    if scale is None or per_unit == 1 and scale == 1.0 and str(unit).lower() in ("pixel", "pixels"):
        return None
    return scale / per_unit


def _ome_pixel_size(xml: str) -> float | None:
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for el in root.iter():
        if el.tag.endswith("Pixels") and "PhysicalSizeX" in el.attrib:
            unit = el.attrib.get("PhysicalSizeXUnit", "µm")
            scale = METRIC_UNIT_IN_UM.get(unit.strip().lower(), None)
            return None if scale is None else float(el.attrib["PhysicalSizeX"]) * scale
    return None


# ----------------------------------------------------------------------------- writing

def write_tiff(path: str | Path, array: np.ndarray, pixel_size_um: float | None = None) -> Path:
    """Write a 2D array as an ImageJ TIFF (zlib), with the pixel size in µm when known
    (metadata rules: `band_writer.tiff_options`)."""
    import tifffile

    from rescale4dl_bmz.files.band_writer import tiff_options

    if array.dtype in (np.uint64, np.int64) or array.dtype == np.int32:
        array = compact_labels(array) if np.issubdtype(array.dtype, np.integer) and array.min() >= 0 else array
    imagej, options = tiff_options(array.dtype, pixel_size_um)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, array, imagej=imagej, compression="zlib", **options)
    return Path(path)

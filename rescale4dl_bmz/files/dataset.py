"""Dataset discovery, validation and TIFF IO with pixel sizes.

The only module (besides export and report) that touches the disk. Every reader validates
what it reads and raises `InputError` naming the file and the problem. Writers are atomic
(temporary file + rename) so an interrupted run never leaves half a file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from rescale4dl_bmz.errors import InputError

IMAGE_SUFFIXES = (".tif", ".tiff", ".png")
_UMASK = os.umask(0o022)
os.umask(_UMASK)

from rescale4dl_bmz.files.units import METRIC_UNIT_IN_UM as _UNIT_IN_UM  # length units, in µm


@dataclass(frozen=True)
class Pair:
    """An image and its instance mask, paired by file stem."""

    name: str
    image: Path
    mask: Path


# ----------------------------------------------------------------------------- discovery

def list_images(folder: str | Path, what: str = "folder") -> list[Path]:
    """Sorted image files (.tif/.tiff/.png) of a folder; error when missing or empty."""
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"{what} {folder} does not exist")
    if not folder.is_dir():
        raise InputError(f"{what} {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not p.name.startswith("."))
    if not files:
        raise InputError(f"{what} {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _by_stem(files: Sequence[Path], folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for f in files:
        if f.stem in out:
            raise InputError(f"{folder}: two files share the name {f.stem!r} ({out[f.stem].name}, {f.name})")
        out[f.stem] = f
    return out


def pair_files(images_dir: str | Path, masks_dir: str | Path) -> list[Pair]:
    """Pair images with masks by file name (stem). Every file must have a partner."""
    images = _by_stem(list_images(images_dir, "image folder"), Path(images_dir))
    masks = _by_stem(list_images(masks_dir, "mask folder"), Path(masks_dir))
    for stem, path in images.items():
        if stem not in masks:
            raise InputError(f"{path}: no mask with the same name in {masks_dir}")
    for stem, path in masks.items():
        if stem not in images:
            raise InputError(f"{path}: no image with the same name in {images_dir}")
    return [Pair(stem, images[stem], masks[stem]) for stem in sorted(images)]


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
    from rescale4dl_bmz.data.label_arrays import check_labels

    return label_dtype(check_labels(arr, f"{path}: mask"))


def read_instance_mask(path: str | Path) -> np.ndarray:
    """`read_mask`, refusing what is not an instance label image (intensity, binary, semantic)."""
    from rescale4dl_bmz.data.label_arrays import check_instance_mask

    return check_instance_mask(read_mask(path), str(path))


def label_dtype(labels: np.ndarray) -> np.ndarray:
    """The smallest of uint8/uint16/uint32 that holds every label (never wraps)."""
    top = int(labels.max()) if labels.size else 0
    for dt in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dt).max:
            return labels.astype(dt, copy=False)
    return labels.astype(np.uint64, copy=False)


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
    scale = _UNIT_IN_UM.get(str(unit).strip().lower().replace("\\u00b5", "µ"))
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
            scale = _UNIT_IN_UM.get(unit.strip().lower(), None)
            return None if scale is None else float(el.attrib["PhysicalSizeX"]) * scale
    return None


# ----------------------------------------------------------------------------- writing

@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder; cannot write a file there")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:  # name the file the user asked for, not the temporary one
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp_path, path)
    except OSError as exc:
        if exc.filename is None or str(exc.filename) == str(tmp_path):  # name the file the user knows
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def read_json_object(path: str | Path, missing: str | None = None) -> dict:
    """A JSON file holding an object; `missing` is the message when the file is absent."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(missing or f"{path}: file not found") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot be read as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def write_csv(path: str | Path, table) -> Path:
    """A DataFrame as CSV, atomically (full float precision, NaN as an empty cell)."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return Path(path)


# columns that hold names: read as text, so image "00003" stays "00003" and "NA" stays "NA"
NAME_COLUMNS = ("image", "name", "factor", "grid", "status", "source", "task", "stage")


def read_csv(path: str | Path):
    """A table written by `write_csv`: name columns as strings, empty cells as NaN."""
    import pandas as pd

    header = pd.read_csv(path, nrows=0).columns
    return pd.read_csv(path, dtype={c: str for c in NAME_COLUMNS if c in header}, keep_default_na=False,
                       na_values=[""])


def write_json(path: str | Path, data) -> Path:
    return write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_tiff(path: str | Path, array: np.ndarray, pixel_size_um: float | None = None) -> Path:
    """Write a 2D array as an ImageJ TIFF (zlib), with the pixel size in µm when known."""
    import tifffile

    kwargs: dict = {"imagej": True, "compression": "zlib"}
    if pixel_size_um is not None:
        kwargs["resolution"] = (1.0 / pixel_size_um, 1.0 / pixel_size_um)
        kwargs["metadata"] = {"unit": "um", "axes": "YX"}
    else:
        kwargs["metadata"] = {"axes": "YX"}
    if array.dtype in (np.uint64, np.int64) or array.dtype == np.int32:
        array = label_dtype(array) if np.issubdtype(array.dtype, np.integer) and array.min() >= 0 else array
    if array.dtype == np.uint32:
        kwargs.pop("imagej")  # ImageJ hyperstacks cannot hold uint32; keep the resolution tags
        kwargs["metadata"] = None
        if pixel_size_um is not None:
            kwargs["resolutionunit"] = "CENTIMETER"
            kwargs["resolution"] = (1e4 / pixel_size_um, 1e4 / pixel_size_um)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, array, **kwargs)
    return Path(path)


def ensure_outside(out: str | Path, *inputs: str | Path) -> None:
    """Refuse an output folder inside (or equal to) an input folder, and an input inside the output
    folder (it would be written to, or taken for output): inputs are never written to."""
    o = Path(out).resolve()
    for given in inputs:
        i = Path(given).resolve()
        if o == i or i in o.parents:
            raise InputError(f"output folder {out} lies inside the input folder {i}; choose another --out")
        if o in i.parents:
            raise InputError(f"input {given} lies inside the output folder {out}; move it or choose another --out")
    check_output_folder(out)


def check_output_folder(out: str | Path, what: str = "--out") -> Path:
    """An output folder path that can be a folder: not an existing file, no file among its parents."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{what} {out} exists and is not a folder")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{what} {out}: {parent} is a file, not a folder")
            break
    return out


def check_output_file(path: str | Path, what: str) -> Path:
    """An output file path: not an existing folder, and its folder can be a folder."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder; give a file name")
    check_output_folder(path.parent, what)
    return path


# ----------------------------------------------------------------------------- validated dataset

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
        from rescale4dl_bmz.data.label_arrays import check_instance_mask

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

"""Label arrays: the one check every label array goes through (2D, whole numbers, never
negative) and the one rule for the integer type labels are kept in (never wraps)."""

from __future__ import annotations

import numpy as np

from rescale4dl_bmz.errors import InputError


def check_labels(labels, what: str = "labels") -> np.ndarray:
    """A 2D array of non-negative whole numbers.

    Integer input comes back as is (no copy), booleans as uint8, whole-valued floats as int64;
    anything else is an `InputError` naming `what` (a file name, or "ground truth", ...).
    """
    a = np.asarray(labels)
    if a.ndim != 2:
        raise InputError(f"{what} must be 2D, got shape {a.shape}")
    if a.dtype == bool:
        return a.view(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        if a.size and (not np.all(np.isfinite(a)) or np.any(a != np.round(a))):
            raise InputError(f"{what} has non-integer values; labels must be whole numbers")
    elif not np.issubdtype(a.dtype, np.integer):
        raise InputError(f"{what} has unsupported pixel type {a.dtype}")
    if a.size and not np.issubdtype(a.dtype, np.unsignedinteger) and a.min() < 0:
        raise InputError(f"{what} has negative values (min {a.min()}); labels must be >= 0")
    return a.astype(np.int64) if np.issubdtype(a.dtype, np.floating) else a


def label_dtype(max_label: int, at_least: type = np.uint8) -> type:
    """The smallest of uint8/uint16/uint32, no smaller than `at_least`, that holds `max_label`.

    Labels above 2^32 - 1 are refused: TIFF readers (ImageJ included) stop at 32 bits, and a
    cast would wrap. `at_least=np.uint16` is the mask-file format of the ladder and of
    predicted instances (uint16, uint32 when the labels need it).
    """
    for dtype in (np.uint8, np.uint16, np.uint32):
        if np.iinfo(dtype).max >= np.iinfo(at_least).max and max_label <= np.iinfo(dtype).max:
            return dtype
    raise InputError(f"mask label {max_label} does not fit 32 bits")


def compact_labels(labels: np.ndarray, at_least: type = np.uint8) -> np.ndarray:
    """Non-negative integer labels in their `label_dtype` (no copy when already in it)."""
    top = int(labels.max()) if labels.size else 0
    return labels.astype(label_dtype(top, at_least), copy=False)


def check_instance_mask(labels: np.ndarray, what: str = "mask") -> np.ndarray:
    """Refuse an array that is not an instance label image (an intensity, binary or noise image).

    In a label image each object is one connected piece carrying its own integer, so the number of
    connected same-valued pieces is close to the number of labels (1.0–1.4 on the real masks here)
    and objects span several pixels. An intensity image gives thousands of pieces per value. One
    linear pass (`skimage.measure.label`), so it takes milliseconds and one label-sized array.
    """
    from skimage.measure import label

    a = check_labels(labels, what)
    n_fg = int(np.count_nonzero(a))
    if n_fg == 0:
        return a
    n_labels = int(np.count_nonzero(np.unique(a)))
    if n_labels > max(1, n_fg // 4):
        raise InputError(f"{what} has {n_labels} labels for {n_fg} foreground pixels (under 4 px per object): "
                         "this looks like an intensity image, not instance labels")
    pieces = int(label(a, background=0, connectivity=2, return_num=True)[1])
    if pieces > 4 * n_labels and pieces - n_labels >= 20:
        kind = "a binary mask" if n_labels == 1 else "an intensity or semantic image"
        raise InputError(f"{what}: its {n_labels} label value(s) form {pieces} separate pieces, so it looks like "
                         f"{kind}, not instance labels (one integer per object, 0 = background)")
    return a

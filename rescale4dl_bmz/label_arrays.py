"""The one check every label array goes through: 2D, whole numbers, never negative."""

from __future__ import annotations

import numpy as np

from .errors import InputError


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

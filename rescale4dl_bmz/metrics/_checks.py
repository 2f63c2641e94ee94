"""Input checks shared by the metrics: 2D label arrays, equal shapes. Errors are `InputError`."""

from __future__ import annotations

import numpy as np

from ..errors import InputError


def as_label_image(labels: np.ndarray, what: str = "labels") -> np.ndarray:
    """A 2D array of non-negative whole numbers (no copy for integer input; bool -> uint8)."""
    a = np.asarray(labels)
    if a.ndim != 2:
        raise InputError(f"{what} must be a 2D array, got shape {a.shape}")
    if a.dtype == bool:
        return a.view(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        if a.size and np.issubdtype(a.dtype, np.signedinteger) and a.min() < 0:
            raise InputError(f"{what} has negative labels (min {a.min()}); labels must be >= 0")
        return a
    if np.issubdtype(a.dtype, np.floating):
        if a.size and (not np.all(np.isfinite(a)) or np.any(a != np.round(a))):
            raise InputError(f"{what} has non-integer values; labels must be whole numbers")
        if a.size and a.min() < 0:
            raise InputError(f"{what} has negative labels (min {a.min()}); labels must be >= 0")
        return a.astype(np.int64)
    raise InputError(f"{what} has unsupported pixel type {a.dtype}")


def check_same_shape(gt: np.ndarray, pred: np.ndarray, what_gt: str = "ground truth",
                     what_pred: str = "prediction") -> None:
    """Refuse arrays of different shapes, naming both."""
    if np.shape(gt) != np.shape(pred):
        raise InputError(f"{what_gt} has shape {np.shape(gt)} but {what_pred} has shape {np.shape(pred)}")

"""Input checks shared by the metrics: 2D label arrays, equal shapes. Errors are `InputError`."""

from __future__ import annotations

import numpy as np

from rescale4dl_bmz.errors import InputError


def check_same_shape(gt: np.ndarray, pred: np.ndarray, what_gt: str = "ground truth",
                     what_pred: str = "prediction") -> None:
    """Refuse arrays of different shapes, naming both."""
    if np.shape(gt) != np.shape(pred):
        raise InputError(f"{what_gt} has shape {np.shape(gt)} but {what_pred} has shape {np.shape(pred)}")

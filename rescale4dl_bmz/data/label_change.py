"""How a mask's objects fared at one factor: objects present, vanished and split (pure numpy)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelChange:
    """How a mask's objects fared at one factor, against the reference (og, cropped) mask."""

    objects: int              # labels present at this factor
    vanished: tuple[int, ...]  # labels of the reference absent at this factor
    split: int                # objects made of more than one 8-connected piece at this factor


def present_labels(labels: np.ndarray) -> np.ndarray:
    """Sorted non-zero labels present in a mask."""
    if labels.size and labels.dtype.itemsize <= 2:
        u = np.flatnonzero(np.bincount(labels.ravel()))
    else:
        u = np.unique(labels)
    return u[u != 0]


def split_objects(labels: np.ndarray) -> int:
    """Number of labels occupying more than one 8-connected piece."""
    from skimage.measure import label as connected

    pieces = connected(labels, background=0, connectivity=2)
    if pieces.max() == 0:
        return 0
    owner = np.zeros(int(pieces.max()) + 1, dtype=np.int64)
    owner[pieces.ravel()] = labels.ravel()
    _, counts = np.unique(owner[1:], return_counts=True)
    return int(np.count_nonzero(counts > 1))


def compare_labels(reference: np.ndarray, rescaled: np.ndarray) -> LabelChange:
    """Objects present, vanished and split in `rescaled` relative to `reference`."""
    ref, now = present_labels(reference), present_labels(rescaled)
    gone = np.setdiff1d(ref, now, assume_unique=True)
    return LabelChange(int(now.size), tuple(int(v) for v in gone), split_objects(rescaled))

"""Semantic IoU of 0/1/2 masks (0 background, 1 inner, 2 edge), over the whole image.

`iou_inner` and `iou_edge` are the per-class IoUs; `iou_semantic` is their mean (the paper's
"ALL", background excluded); `iou_binary` compares GT != 0 with pred != 0; `iou_all_labels` is
the mean over all three labels including background (the ZeroCostDL4Mic view). A class absent
from both masks has no IoU (NaN) and is left out of the means.

>>> gt = np.array([[0, 1, 1, 2]]); pred = np.array([[0, 1, 2, 2]])
>>> s = semantic_scores(gt, pred)
>>> float(s.iou_inner), float(s.iou_edge), float(s.iou_semantic), float(s.iou_binary)
(0.5, 0.5, 0.5, 1.0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.files.label_arrays import check_labels
from rescale4dl_bmz.metrics._checks import check_same_shape

CLASSES = (0, 1, 2)


@dataclass(frozen=True)
class SemanticScores:
    """Whole-image IoUs of one GT/prediction pair (NaN where a class is absent from both)."""

    iou_inner: float
    iou_edge: float
    iou_semantic: float
    iou_binary: float
    iou_all_labels: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def check_semantic(mask: np.ndarray, what: str = "semantic mask") -> np.ndarray:
    """A 2D mask whose values all lie in {0, 1, 2}; InputError naming `what` otherwise."""
    a = check_labels(mask, what)
    if a.size and a.max() > 2:
        bad = np.unique(a[a > 2])[:5].tolist()
        raise InputError(f"{what} has values {bad} outside {{0, 1, 2}} (0 background, 1 inner, 2 edge)")
    return a


def confusion(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """3x3 pixel counts: rows GT class, columns predicted class."""
    g = check_semantic(gt, "ground truth")
    p = check_semantic(pred, "prediction")
    check_same_shape(g, p)
    codes = g.astype(np.intp).ravel() * 3 + p.ravel()
    return np.bincount(codes, minlength=9).reshape(3, 3)


def class_iou(matrix: np.ndarray) -> np.ndarray:
    """IoU of every class from a confusion matrix (NaN where the class is absent from both)."""
    m = np.asarray(matrix, dtype=np.int64)
    inter = np.diag(m)
    union = m.sum(0) + m.sum(1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.maximum(union, 1), np.nan)


def _nanmean(values) -> float:
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")


def binary_iou(gt: np.ndarray, pred: np.ndarray) -> float:
    """IoU of GT != 0 and pred != 0, for any label images (NaN when both are empty)."""
    g = check_labels(gt, "ground truth") != 0
    p = check_labels(pred, "prediction") != 0
    check_same_shape(g, p)
    union = int(np.count_nonzero(g | p))
    return int(np.count_nonzero(g & p)) / union if union else float("nan")


def semantic_scores(gt: np.ndarray, pred: np.ndarray) -> SemanticScores:
    """Per-class, semantic ("ALL"), binary and all-label IoU of two 0/1/2 masks."""
    m = confusion(gt, pred)
    per_class = class_iou(m)
    fg_inter = int(m[1:, 1:].sum())
    fg_union = int(m.sum() - m[0, 0])
    binary = fg_inter / fg_union if fg_union else float("nan")
    return SemanticScores(
        iou_inner=float(per_class[1]),
        iou_edge=float(per_class[2]),
        iou_semantic=_nanmean(per_class[1:]),
        iou_binary=float(binary),
        iou_all_labels=_nanmean(per_class),
    )

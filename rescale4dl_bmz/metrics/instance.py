"""Instance matching: every ground-truth object against every predicted object, whole image.

A GT object and a predicted object match when their IoU is above `thresh` (default 0.5). Above
0.5 a match is unique (two objects cannot both overlap more than half of a third), so no
assignment problem is solved; below 0.5 the matching maximises the number of matches, then the
IoU sum (as `stardist.matching` does). Background (0) is never an object and never a match.

Statistics follow `stardist.matching`: precision TP/(TP+FP), recall TP/(TP+FN), F1, accuracy
TP/(TP+FP+FN) (all 0 when TP = 0), `mean_true_iou` = mean per-GT-object IoU with unmatched GT
counted as 0 (the ranking IoU), `mean_matched_iou` over TPs only, and panoptic quality
sum(matched IoU)/(TP + FP/2 + FN/2). One difference: a pair matches at IoU > thresh here, at
IoU >= thresh in stardist (they differ only for an IoU of exactly `thresh`).

>>> y_true = np.zeros((100, 100), np.uint16)
>>> y_true[10:20, 10:20] = 1
>>> y_pred = np.roll(y_true, 2, axis=0)
>>> m = match_instances(y_true, y_pred)
>>> m.tp, m.fp, m.fn, round(m.mean_true_iou, 4)
(1, 0, 0, 0.6667)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.files.label_arrays import check_labels
from rescale4dl_bmz.metrics._checks import check_same_shape

_DENSE_BINS = 1 << 25  # count overlaps in a dense table up to this many (GT, pred) label pairs


@dataclass(frozen=True)
class Matching:
    """Matching of one GT/prediction pair: counts, scores and the per-object IoUs."""

    thresh: float
    n_true: int
    n_pred: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    accuracy: float
    mean_true_iou: float
    mean_matched_iou: float
    panoptic_quality: float
    true_labels: np.ndarray   # GT labels, ascending
    true_iou: np.ndarray      # IoU of each GT object with its match, 0 when unmatched
    true_match: np.ndarray    # the matched predicted label, 0 when unmatched
    pred_labels: np.ndarray   # predicted labels, ascending
    pred_iou: np.ndarray
    pred_match: np.ndarray    # the matched GT label, 0 when unmatched

    def summary(self) -> dict[str, float]:
        """The scalar statistics as a dict (no arrays)."""
        keys = ("thresh", "n_true", "n_pred", "tp", "fp", "fn", "precision", "recall", "f1", "accuracy",
                "mean_true_iou", "mean_matched_iou", "panoptic_quality")
        return {k: getattr(self, k) for k in keys}


class LabelIndex:
    """A label image re-indexed 1..n in label order (0 = background), computed once and shared.

    `index` (the re-indexed image; the input itself when its labels already run 1..n), `labels`
    (the n original labels), `sizes` (pixel counts, position 0 = background) and `boxes` (bounding
    box slices per object, computed on first use).
    """

    def __init__(self, index: np.ndarray, labels: np.ndarray, sizes: np.ndarray):
        self.index, self.labels, self.sizes = index, labels, sizes
        self._boxes: list | None = None

    @property
    def n(self) -> int:
        return int(self.labels.size)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.index.shape

    @property
    def boxes(self) -> list:
        if self._boxes is None:
            from scipy import ndimage as ndi

            self._boxes = ndi.find_objects(self.index, max_label=self.n) if self.n else []
        return self._boxes


def sequential(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index image: 0 background, 1..n objects in label order; the n labels; sizes, index 0 = bg)."""
    flat = labels.ravel()
    if flat.dtype == np.uint64:  # np.bincount cannot take uint64
        flat = flat.astype(np.intp)
    top = int(flat.max()) if flat.size else 0
    if top < (1 << 24):
        counts = np.bincount(flat, minlength=top + 1)
        values = np.flatnonzero(counts)
        values = values[values > 0]
        sizes = np.concatenate(([counts[0]], counts[values]))
        if values.size == top:  # already 1..n: no re-indexing needed
            index = labels if labels.dtype.kind in "ui" and labels.dtype != np.uint64 else flat.reshape(labels.shape)
            return index, values.astype(np.int64), sizes.astype(np.int64)
        lut = np.zeros(top + 1, np.int32)
        lut[values] = np.arange(1, values.size + 1, dtype=np.int32)
        index = lut[flat]
    else:
        values, index, counts = np.unique(flat, return_inverse=True, return_counts=True)
        if values[0] != 0:  # no background: shift so index 0 stays background
            values, counts, index = np.concatenate(([0], values)), np.concatenate(([0], counts)), index + 1
        index = index.astype(np.int32)
        sizes, values = counts, values[1:]
    return index.reshape(labels.shape), values.astype(np.int64), np.asarray(sizes, np.int64)


def index_labels(labels, what: str = "labels") -> LabelIndex:
    """A `LabelIndex` of a label image (validated), or `labels` itself when it is one already."""
    if isinstance(labels, LabelIndex):
        return labels
    return LabelIndex(*sequential(check_labels(labels, what)))


def pair_overlaps(true_index: np.ndarray, pred_index: np.ndarray, n_true: int, n_pred: int):
    """(GT index, pred index, intersection) of every overlapping pair of objects."""
    both = (true_index > 0) & (pred_index > 0)
    codes = true_index[both].astype(np.int64) * (n_pred + 1) + pred_index[both]
    if (n_true + 1) * (n_pred + 1) <= _DENSE_BINS:
        counts = np.bincount(codes, minlength=(n_true + 1) * (n_pred + 1))
        nz = np.flatnonzero(counts)
        inter = counts[nz]
    else:
        nz, inter = np.unique(codes, return_counts=True)
    return nz // (n_pred + 1), nz % (n_pred + 1), inter.astype(np.int64)


def _assign(t: np.ndarray, p: np.ndarray, iou: np.ndarray, thresh: float) -> np.ndarray:
    """Indices (into t/p/iou) of the matched pairs."""
    ok = np.flatnonzero(iou > thresh)
    if thresh >= 0.5 or ok.size == 0:
        return ok
    from scipy.optimize import linear_sum_assignment

    rows, r_inv = np.unique(t[ok], return_inverse=True)
    cols, c_inv = np.unique(p[ok], return_inverse=True)
    n_matched = min(rows.size, cols.size)
    cost = np.zeros((rows.size, cols.size))
    cost[r_inv, c_inv] = -1.0 - iou[ok] / (2 * n_matched)  # most matches first, then the IoU sum
    ri, ci = linear_sum_assignment(cost)
    chosen = cost[ri, ci] < 0
    lookup = {(a, b): k for k, a, b in zip(ok, r_inv, c_inv)}
    return np.array(sorted(lookup[(a, b)] for a, b in zip(ri[chosen], ci[chosen])), dtype=np.intp)


def match_instances(gt: np.ndarray | LabelIndex, pred: np.ndarray | LabelIndex, thresh: float = 0.5) -> Matching:
    """Match GT and predicted instance labels at IoU > `thresh` (see the module docstring)."""
    if not 0.0 <= float(thresh) < 1.0:
        raise InputError(f"matching threshold must lie in [0, 1), got {thresh}")
    g = index_labels(gt, "ground truth")
    q = index_labels(pred, "prediction")
    check_same_shape(g.index, q.index)
    ti, t_labels, t_sizes = g.index, g.labels, g.sizes
    pi, p_labels, p_sizes = q.index, q.labels, q.sizes
    n_true, n_pred = t_labels.size, p_labels.size
    t, p, inter = pair_overlaps(ti, pi, n_true, n_pred)
    iou = inter / (t_sizes[t] + p_sizes[p] - inter)
    k = _assign(t, p, iou, float(thresh))

    true_iou, true_match = np.zeros(n_true), np.zeros(n_true, np.int64)
    pred_iou, pred_match = np.zeros(n_pred), np.zeros(n_pred, np.int64)
    true_iou[t[k] - 1], true_match[t[k] - 1] = iou[k], p_labels[p[k] - 1]
    pred_iou[p[k] - 1], pred_match[p[k] - 1] = iou[k], t_labels[t[k] - 1]

    tp = int(k.size)
    fp, fn = n_pred - tp, n_true - tp
    total = float(iou[k].sum())
    return Matching(
        thresh=float(thresh), n_true=n_true, n_pred=n_pred, tp=tp, fp=fp, fn=fn,
        precision=tp / (tp + fp) if tp else 0.0,
        recall=tp / (tp + fn) if tp else 0.0,
        f1=2 * tp / (2 * tp + fp + fn) if tp else 0.0,
        accuracy=tp / (tp + fp + fn) if tp else 0.0,
        mean_true_iou=total / n_true if n_true else 0.0,
        mean_matched_iou=total / tp if tp else 0.0,
        panoptic_quality=total / (tp + fp / 2 + fn / 2) if tp else 0.0,
        true_labels=t_labels, true_iou=true_iou, true_match=true_match,
        pred_labels=p_labels, pred_iou=pred_iou, pred_match=pred_match,
    )

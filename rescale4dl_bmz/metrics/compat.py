"""Compatibility: the per-object IoU of the original ReScale4DL code (0.1-0.2), reproduced exactly.

Kept only so our tables can be checked against the published ones (column `iou_rescale4dl`);
use `match_instances` for real results. For every GT object, in label order, the original:

1. crops a box around it: the bounding box widened by (extent + 2) // 2 on its top and left
   sides only (its bottom/right padding was clipped to the box itself), clipped at 0;
2. gives IoU 0 when the prediction holds no object, or when the crop holds a single value;
3. otherwise walks the crop's prediction values in ascending order, background 0 included,
   and takes the first whose IoU with the object *inside the crop* is above 0.5; a matched
   predicted object is removed from the prediction for all later GT objects.

Known defects reproduced here on purpose: a GT object can "match" the background (label 0)
when the prediction misses most of it; IoUs are computed inside the crop, so a predicted
object reaching out of it scores too high; the matching is greedy in label order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rescale4dl_bmz.metrics._checks import check_same_shape
from rescale4dl_bmz.metrics.instance import LabelIndex, index_labels


@dataclass(frozen=True)
class CropIoU:
    """Per-GT-object results of the original crop-based matching."""

    labels: np.ndarray    # GT labels, ascending
    iou: np.ndarray       # IoU inside the crop, 0 when unmatched
    matched: np.ndarray   # matched predicted label: 0 when unmatched OR matched to background


def crop_iou_rescale4dl(gt: np.ndarray | LabelIndex, pred: np.ndarray | LabelIndex) -> CropIoU:
    """The original ReScale4DL per-object IoU (see the module docstring); a compatibility metric."""
    g = index_labels(gt, "ground truth")
    q = index_labels(pred, "prediction")
    check_same_shape(g.index, q.index)
    n, n_pred = g.n, q.n
    iou, matched = np.zeros(n), np.zeros(n, np.int64)
    if n_pred == 0:
        return CropIoU(g.labels, iou, matched)
    alive = np.ones(n_pred + 1, bool)  # predicted objects not yet taken by an earlier GT object
    for k, box in enumerate(g.boxes):
        if box is None:
            continue
        (r0, r1), (c0, c1) = (box[0].start, box[0].stop), (box[1].start, box[1].stop)
        r0, c0 = max(r0 - (r1 - r0 + 2) // 2, 0), max(c0 - (c1 - c0 + 2) // 2, 0)
        obj = (g.index[r0:r1, c0:c1] == k + 1).ravel()
        crop = q.index[r0:r1, c0:c1].ravel()
        crop = np.where(alive[crop], crop, 0)
        if n_pred < 4 * crop.size:  # small label range: count directly
            counts = np.bincount(crop, minlength=n_pred + 1)
            values = np.flatnonzero(counts)
            sizes, inter = counts[values], np.bincount(crop[obj], minlength=n_pred + 1)[values]
        else:
            values, inverse, sizes = np.unique(crop, return_inverse=True, return_counts=True)
            inter = np.bincount(inverse[obj], minlength=values.size)
        if values.size == 1:
            continue
        scores = inter / (int(obj.sum()) + sizes - inter)
        hit = np.flatnonzero(scores > 0.5)
        if hit.size:
            j = hit[0]
            iou[k] = scores[j]
            if values[j] != 0:
                matched[k] = q.labels[values[j] - 1]
                alive[values[j]] = False
    return CropIoU(g.labels, iou, matched)

"""Instance matching: known answers, agreement with stardist.matching, and the original crop IoU."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.metrics import crop_iou_rescale4dl, match_instances

SCALARS = ("precision", "recall", "f1", "accuracy", "mean_true_score", "mean_matched_score", "panoptic_quality")
OURS = {"mean_true_score": "mean_true_iou", "mean_matched_score": "mean_matched_iou"}


def _stardist(gt, pred, thresh=0.5):
    from stardist.matching import matching

    return matching(gt, pred, thresh=thresh)


def _agrees_with_stardist(gt, pred, thresh=0.5, tol=1e-6):
    ours, theirs = match_instances(gt, pred, thresh), _stardist(gt, pred, thresh)
    assert (ours.tp, ours.fp, ours.fn, ours.n_true, ours.n_pred) == \
        (theirs.tp, theirs.fp, theirs.fn, theirs.n_true, theirs.n_pred)
    for name in SCALARS:  # stardist computes its IoUs in float32
        assert getattr(ours, OURS.get(name, name)) == pytest.approx(getattr(theirs, name), abs=tol), name
    return ours


def _square(shape, top, left, size, label=1, out=None):
    out = np.zeros(shape, np.uint16) if out is None else out
    out[top:top + size, left:left + size] = label
    return out


def _disks(shape, centres, radius):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    out = np.zeros(shape, np.uint16)
    for k, (y, x) in enumerate(centres, 1):
        out[(yy - y) ** 2 + (xx - x) ** 2 <= radius ** 2] = k
    return out


@pytest.mark.parametrize("shift, iou, matched", [(0, 1.0, True), (2, 80 / 120, True), (3, 70 / 130, True),
                                                 (4, 60 / 140, False)])
def test_shifted_square(shift, iou, matched):
    gt = _square((40, 40), 10, 10, 10)
    m = _agrees_with_stardist(gt, np.roll(gt, shift, axis=0))
    assert (m.tp, m.fp, m.fn) == ((1, 0, 0) if matched else (0, 1, 1))
    assert m.true_iou[0] == pytest.approx(iou if matched else 0.0)
    assert m.mean_true_iou == pytest.approx(iou if matched else 0.0)


def test_shifted_disks_count_exactly():
    centres = [(20, 20), (20, 60), (60, 20), (60, 60)]
    gt = _disks((80, 80), centres, 8)
    for shift, tp in ((1, 4), (3, 4), (8, 0)):
        pred = _disks((80, 80), [(y + shift, x) for y, x in centres], 8)
        m = _agrees_with_stardist(gt, pred)
        assert (m.tp, m.fp, m.fn) == (tp, 4 - tp, 4 - tp)
        inter = np.count_nonzero((gt == 1) & (pred == 1))
        union = np.count_nonzero((gt == 1) | (pred == 1))
        assert m.true_iou[0] == (pytest.approx(inter / union) if tp else 0.0)


def test_split_object():
    gt = np.zeros((20, 40), np.uint8)
    gt[5:15, 5:25] = 1                                # 10 x 20
    pred = np.zeros_like(gt)
    pred[5:15, 5:17], pred[5:15, 17:25] = 1, 2        # 120 + 80 px
    m = _agrees_with_stardist(gt, pred)
    assert (m.tp, m.fp, m.fn) == (1, 1, 0)
    assert m.true_iou[0] == pytest.approx(0.6) and list(m.pred_iou) == [pytest.approx(0.6), 0.0]
    pred[5:15, 5:15], pred[5:15, 15:25] = 1, 2        # two halves: IoU exactly 0.5, not above
    m = match_instances(gt, pred)
    assert (m.tp, m.fp, m.fn) == (0, 2, 1)


def test_merged_objects():
    gt = np.zeros((20, 40), np.uint8)
    gt[5:15, 5:17], gt[5:15, 17:25] = 1, 2            # 120 + 80 px, touching
    pred = (gt > 0).astype(np.uint8) * 9              # one object over both
    m = _agrees_with_stardist(gt, pred)
    assert (m.tp, m.fp, m.fn) == (1, 0, 1)
    assert list(m.true_match) == [9, 0] and list(m.pred_match) == [1]
    assert m.mean_true_iou == pytest.approx(0.6 / 2)


def test_empty_prediction_and_empty_ground_truth():
    gt = _disks((50, 50), [(15, 15), (35, 35)], 6)
    empty = np.zeros_like(gt)
    m = _agrees_with_stardist(gt, empty)
    assert (m.tp, m.fp, m.fn, m.n_true, m.n_pred) == (0, 0, 2, 2, 0)
    assert list(m.true_iou) == [0.0, 0.0] and m.precision == m.recall == m.f1 == m.accuracy == 0.0
    m = _agrees_with_stardist(empty, gt)
    assert (m.tp, m.fp, m.fn, m.n_true, m.n_pred) == (0, 2, 0, 0, 2)
    m = _agrees_with_stardist(empty, empty)
    assert (m.tp, m.fp, m.fn) == (0, 0, 0) and m.mean_true_iou == 0.0


def test_background_is_never_matched():
    gt = _square((30, 30), 0, 0, 10)                  # touches the image corner
    pred = _square((30, 30), 4, 4, 2, label=5)        # a tiny object inside it
    m = match_instances(gt, pred)
    assert (m.tp, m.fp, m.fn) == (0, 1, 1) and m.true_iou[0] == 0.0
    # The original crop-based code "matches" it to the background (96 of its 100 px).
    crop = crop_iou_rescale4dl(gt, pred)
    assert crop.iou[0] == pytest.approx(0.96) and crop.matched[0] == 0


def test_labels_need_not_be_sequential_and_dtypes_do_not_matter():
    gt = _disks((60, 60), [(15, 15), (15, 45), (45, 30)], 7)
    pred = np.roll(gt, 2, axis=1)
    ref = match_instances(gt, pred)
    lut = np.array([0, 7, 300, 65000], np.int64)
    for g, p in ((lut[gt].astype(np.uint16), lut[pred].astype(np.uint32)),
                 (lut[gt].astype(np.uint64), lut[pred].astype(np.float64)),
                 (lut[gt] * 1000, lut[pred].astype(np.int32))):
        m = match_instances(g, p)
        assert (m.tp, m.fp, m.fn) == (ref.tp, ref.fp, ref.fn)
        np.testing.assert_allclose(m.true_iou, ref.true_iou)
    m = match_instances(lut[gt] * 1000, pred)
    assert list(m.true_labels) == [7000, 300000, 65000000] and list(m.true_match) == [1, 2, 3]


def test_bad_labels_are_refused():
    gt = np.zeros((5, 5), np.uint8)
    with pytest.raises(InputError, match="non-integer"):
        match_instances(gt, np.full((5, 5), 0.5))
    with pytest.raises(InputError, match="negative"):
        match_instances(np.full((5, 5), -1, np.int16), gt)
    with pytest.raises(InputError, match="shape"):
        match_instances(gt, np.zeros((5, 6), np.uint8))
    with pytest.raises(InputError, match="threshold"):
        match_instances(gt, gt, thresh=1.0)


def _reference_pairs(shared_data):
    root = shared_data / "reference" / "saureus_instance"
    pairs = [(f, p) for f in ("ds2", "ds4") for p in sorted((root / f / "gt").glob("*.tif"))]
    assert len(pairs) == 12
    return pairs


def test_agrees_with_stardist_on_the_saureus_reference_pairs(shared_data):
    import tifffile

    for _, path in _reference_pairs(shared_data):
        gt, pred = tifffile.imread(path), tifffile.imread(path.parent.parent / "pred" / path.name)
        m = _agrees_with_stardist(gt, pred)
        assert m.n_true > 100
        # Every matched pair is the only pair of its objects above 0.5, and IoUs come from pixel counts.
        k = int(np.flatnonzero(m.true_match)[0])
        a, b = gt == m.true_labels[k], pred == m.true_match[k]
        assert m.true_iou[k] == np.count_nonzero(a & b) / np.count_nonzero(a | b)


def test_low_threshold_uses_an_optimal_assignment_like_stardist(shared_data):
    import tifffile

    path = shared_data / "reference" / "saureus_instance" / "ds4" / "gt" / "15.tif"
    gt, pred = tifffile.imread(path), tifffile.imread(path.parent.parent / "pred" / path.name)
    _agrees_with_stardist(gt, pred, thresh=0.1)


def test_crop_iou_reproduces_the_published_saureus_table(shared_data):
    import tifffile

    table = shared_data / "reference" / "tables" / "Saureus_WT_PC190723_summary_stats.csv"
    with open(table, newline="") as fh:
        published = {(r["Grand_Parent_Folder"], r["File_name"]): float(r["IoU"]) for r in csv.DictReader(fh)}
    folder = {"ds2": "downsampling_2", "ds4": "downsampling_4"}
    for factor, path in _reference_pairs(shared_data):
        gt, pred = tifffile.imread(path), tifffile.imread(path.parent.parent / "pred" / path.name)
        crop = crop_iou_rescale4dl(gt, pred)
        assert crop.iou.mean() == pytest.approx(published[(folder[factor], path.name)], abs=1e-9)
        assert crop.iou.size == match_instances(gt, pred).n_true

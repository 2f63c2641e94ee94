"""Semantic IoU: the published DeepBacs numbers to 1e-9, and synthetic cases with known answers."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.metrics import binary_iou, semantic_scores

PUBLISHED_FOLDER = {"og": "OG", "ds2": "downsampling_2"}


def _read(path):
    import tifffile

    return tifffile.imread(path)


def _published(table_path) -> dict:
    """{(folder, file, label): IoU} from a published ReScale4DL table."""
    with open(table_path, newline="") as fh:
        return {(r["Grand_Parent_Folder"], r["File_name"], r["GT_Label"]): float(r["IoU"]) for r in csv.DictReader(fh)}


@pytest.mark.parametrize("factor", ["og", "ds2"])
def test_semantic_iou_reproduces_the_published_deepbacs_table(shared_data, factor):
    ref = shared_data / "reference"
    semantic = _published(ref / "tables" / "Deepbacs_SS_semantic_segmentation_stats.csv")
    binary = _published(ref / "tables" / "Deepbacs_SS_binary_mask_stats.csv")
    files = sorted((ref / "deepbacs_semantic" / factor / "gt").glob("*.tif"))
    assert len(files) == 6
    for gt_path in files:
        s = semantic_scores(_read(gt_path), _read(gt_path.parent.parent / "pred" / gt_path.name))
        key = (PUBLISHED_FOLDER[factor], gt_path.name)
        assert s.iou_inner == pytest.approx(semantic[key + ("1",)], abs=1e-9)
        assert s.iou_edge == pytest.approx(semantic[key + ("2",)], abs=1e-9)
        assert s.iou_semantic == pytest.approx(semantic[key + ("ALL",)], abs=1e-9)
        assert s.iou_binary == pytest.approx(binary[key + ("mask",)], abs=1e-9)


def test_known_confusion():
    gt = np.array([[0, 0, 1, 1, 1, 2, 2, 0]])
    pred = np.array([[0, 1, 1, 1, 2, 2, 0, 0]])
    s = semantic_scores(gt, pred)
    assert s.iou_inner == pytest.approx(2 / 4)       # inner: gt {2,3,4}, pred {1,2,3}
    assert s.iou_edge == pytest.approx(1 / 3)        # edge: gt {5,6}, pred {4,5}
    assert s.iou_semantic == pytest.approx((2 / 4 + 1 / 3) / 2)
    assert s.iou_binary == pytest.approx(4 / 6)      # foreground: gt {2..6}, pred {1..5}
    background = 2 / 4                               # gt {0,1,7}, pred {0,6,7}
    assert s.iou_all_labels == pytest.approx((background + 2 / 4 + 1 / 3) / 3)


def test_perfect_and_absent_classes():
    gt = np.array([[0, 1, 1, 0]], np.uint8)
    s = semantic_scores(gt, gt.copy())
    assert s.iou_inner == 1.0 and s.iou_binary == 1.0 and s.iou_all_labels == 1.0
    assert np.isnan(s.iou_edge)          # no edge anywhere: undefined, left out of the means
    assert s.iou_semantic == 1.0
    empty = semantic_scores(np.zeros((3, 3), np.uint8), np.zeros((3, 3), np.uint8))
    assert np.isnan(empty.iou_semantic) and np.isnan(empty.iou_binary) and empty.iou_all_labels == 1.0


def test_binary_iou_of_instance_labels():
    gt = np.zeros((4, 4), np.uint16)
    gt[:2, :2] = 7
    pred = np.zeros((4, 4), np.int32)
    pred[:2, :3] = 300
    assert binary_iou(gt, pred) == pytest.approx(4 / 6)


@pytest.mark.parametrize("bad", [np.array([[0, 1, 3]]), np.array([[0, 1, 1.5]]), np.array([[0, -1, 1]])])
def test_invalid_semantic_values_are_refused(bad):
    with pytest.raises(InputError, match="prediction"):
        semantic_scores(np.zeros((1, 3), np.uint8), bad)


def test_shape_mismatch_is_refused():
    with pytest.raises(InputError, match="shape"):
        semantic_scores(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8))


def test_docstring_examples_of_the_metrics():
    import doctest

    from rescale4dl_bmz.metrics import instance, morphology, semantic

    for module in (semantic, instance, morphology):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__

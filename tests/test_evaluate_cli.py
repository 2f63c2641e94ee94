"""`rescale4dl evaluate`: the published tables from the reference pairs, the native grid, bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from rescale4dl_bmz.cli.main import main
from rescale4dl_bmz.metrics.summaries import SUMMARY_COLUMNS
from rescale4dl_bmz.metrics.tables import PER_IMAGE_COLUMNS, PER_OBJECT_COLUMNS
from rescale4dl_bmz.data.rescale import rescale_mask


def _published(path: Path, label_column: str | None = None) -> dict:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if label_column:
        return {(r["Grand_Parent_Folder"], r["File_name"], r[label_column]): float(r["IoU"]) for r in rows}
    return {(r["Grand_Parent_Folder"], r["File_name"]): r for r in rows}


def _tables(out: Path):
    return tuple(pd.read_csv(out / f"{n}.csv") for n in ("per_object", "per_image", "summary"))


def test_semantic_reference_pairs_reproduce_the_published_table(shared_data, tmp_path):
    ref = shared_data / "reference"
    folder = ref / "deepbacs_semantic" / "ds2"
    out = tmp_path / "out"
    assert main(["evaluate", str(folder / "gt"), str(folder / "pred"), "--task", "semantic", "--factor", "ds2",
                 "--out", str(out)]) == 0
    per_object, per_image, summary = _tables(out)
    assert list(per_image.columns) == list(PER_IMAGE_COLUMNS) and list(summary.columns) == list(SUMMARY_COLUMNS)
    published = _published(ref / "tables" / "Deepbacs_SS_semantic_segmentation_stats.csv", "GT_Label")
    assert len(per_image) == 6
    for r in per_image.itertuples():
        key = ("downsampling_2", f"{r.image}.tif")
        assert r.iou_inner == pytest.approx(published[key + ("1",)], abs=1e-9)
        assert r.iou_edge == pytest.approx(published[key + ("2",)], abs=1e-9)
        assert r.iou_semantic == pytest.approx(published[key + ("ALL",)], abs=1e-9)
        assert r.iou == r.iou_semantic and r.factor == "ds2" and r.grid == "sampled" and r.n_true > 20
    assert len(summary) == 1 and summary["iou_mean"].item() == pytest.approx(per_image["iou_semantic"].mean())
    assert set(per_object["source"]) == {"gt", "pred"} and per_object["diameter"].gt(0).all()


def test_instance_reference_pairs_by_factor_folder_with_conditions(shared_data, tmp_path):
    ref = shared_data / "reference"
    root = ref / "saureus_instance"        # <factor>/gt and <factor>/pred
    conditions = tmp_path / "conditions.csv"
    # The enlarged cells (PC190723-treated) are images 1, 8 and 11; 9, 10 and 15 are the wild type.
    conditions.write_text("image,condition\n9.tif,WT\n10.tif,WT\n15.tif,WT\n1.tif,PC190723\n8,PC190723\n"
                          "11,PC190723\n")
    out = tmp_path / "out"
    assert main(["evaluate", str(root), str(root), "--task", "instance", "--out", str(out), "--conditions",
                 str(conditions), "--tau", "2"]) == 0
    per_object, per_image, summary = _tables(out)
    assert list(per_object.columns) == list(PER_OBJECT_COLUMNS)
    assert list(summary["factor"]) == ["ds2", "ds4"] and (summary["grid"] == "sampled").all()
    published = _published(ref / "tables" / "Saureus_WT_PC190723_summary_stats.csv")
    folder = {"ds2": "downsampling_2", "ds4": "downsampling_4"}
    for r in per_image.itertuples():
        row = published[(folder[r.factor], f"{r.image}.tif")]
        assert r.iou_rescale4dl == pytest.approx(float(row["IoU"]), abs=1e-9)         # the original's IoU
        assert r.n_true == int(row["GT_count"]) and r.n_pred == int(row["pred_count"])
        assert r.gt_area_mean == pytest.approx(float(row["GT_area"]), abs=1e-9)
        assert r.pct_area_per_pixel == pytest.approx(float(row["GT_Pixel_Coverage_Percent"]), abs=1e-9)
        assert r.tp + r.fn == r.n_true and r.iou == r.iou_instance
    assert (summary["tau_s"] == 2).all()
    assert summary.loc[1, "throughput"] == pytest.approx(4 * summary.loc[0, "throughput"], rel=0.02)
    cond = pd.read_csv(out / "conditions.csv")
    assert len(cond) == 4 and (cond["condition_a"] == "WT").all()
    assert (cond["hedges_g"] > 2).all() and (cond["p_value"] < 1e-10).all()


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array)


def _field(seed: int, shape=(128, 128)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    out = np.zeros(shape, np.uint16)
    for k, (y, x) in enumerate(rng.integers(10, shape[0] - 10, (12, 2)), 1):
        out[(yy - y) ** 2 + (xx - x) ** 2 <= rng.integers(5, 9) ** 2] = k
    return out


def test_native_grid_next_to_the_sampled_one(tmp_path):
    for seed in range(3):
        gt = _field(seed, (130, 128))                      # cropped top-left to 128 x 128 by the ladder
        name = f"f{seed}.tif"
        _write(tmp_path / "original" / name, gt)
        for factor in ("og", "ds2"):
            g = rescale_mask(gt[:128], factor)
            _write(tmp_path / "gt" / factor / name, g)
            _write(tmp_path / "pred" / factor / name, np.roll(g, 1, axis=0))
    out = tmp_path / "out"
    assert main(["evaluate", str(tmp_path / "gt"), str(tmp_path / "pred"), "--task", "instance", "--out", str(out),
                 "--native-gt", str(tmp_path / "original"), "--pixel-size", "0.1"]) == 0
    _, per_image, summary = _tables(out)
    assert list(zip(summary["grid"], summary["factor"])) == [("sampled", "og"), ("sampled", "ds2"),
                                                             ("native", "og"), ("native", "ds2")]
    assert list(summary["pixel_size_um"]) == pytest.approx([0.1, 0.2, 0.1, 0.2])
    s = summary.set_index(["grid", "factor"])
    assert s.loc[("native", "og"), "iou_mean"] == pytest.approx(s.loc[("sampled", "og"), "iou_mean"])
    # A 1-px shift at ds2 is a 2-px shift on the original grid: worse there.
    assert s.loc[("native", "ds2"), "iou_mean"] < s.loc[("sampled", "og"), "iou_mean"]
    assert (per_image.loc[per_image["grid"] == "native", "image_height"] == 128).all()


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_bad_input_exits_with_code_2(tmp_path, capsys):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    _write(gt / "a.tif", np.zeros((8, 8), np.uint8))
    _write(pred / "a.tif", np.zeros((8, 9), np.uint8))
    base = ["--task", "instance", "--out", str(tmp_path / "out")]
    err = _error(capsys, ["evaluate", str(gt), str(pred), *base])
    assert "shape mismatch" in err and str(gt / "a.tif") in err and str(pred / "a.tif") in err

    _write(pred / "a.tif", np.zeros((8, 8), np.uint8))
    _write(gt / "b.tif", np.zeros((8, 8), np.uint8))
    err = _error(capsys, ["evaluate", str(gt), str(pred), *base])
    assert str(gt / "b.tif") in err and "no prediction" in err

    (gt / "b.tif").unlink()
    _write(pred / "a.tif", np.full((8, 8), 3, np.uint8))
    err = _error(capsys, ["evaluate", str(gt), str(pred), "--task", "semantic", "--out", str(tmp_path / "out")])
    assert str(pred / "a.tif") in err and "outside {0, 1, 2}" in err

    _write(pred / "a.tif", np.full((8, 8), 1.5, np.float32))
    err = _error(capsys, ["evaluate", str(gt), str(pred), *base])
    assert str(pred / "a.tif") in err and "non-integer" in err

    err = _error(capsys, ["evaluate", str(gt), str(pred), "--task", "instance", "--out", str(gt / "out")])
    assert "inside the input folder" in err
    err = _error(capsys, ["evaluate", str(tmp_path / "missing"), str(pred), *base])
    assert "does not exist" in err
    _write(tmp_path / "nested" / "ds2" / "a.tif", np.zeros((8, 8), np.uint8))
    err = _error(capsys, ["evaluate", str(tmp_path / "nested"), str(tmp_path / "nested2"), *base])
    assert "does not exist" in err
    (tmp_path / "nested2").mkdir()
    err = _error(capsys, ["evaluate", str(tmp_path / "nested"), str(tmp_path / "nested2"), *base])
    assert "no sub-folder for factor ds2" in err
    _write(pred / "a.tif", np.zeros((8, 8), np.uint8))
    err = _error(capsys, ["evaluate", str(gt), str(pred), *base, "--native-gt", str(tmp_path / "nested" / "ds2"),
                          "--factor", "ds2"])
    assert "covers 16x16" in err
    assert not (tmp_path / "out").exists()

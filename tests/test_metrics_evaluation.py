"""The evaluation API on arrays: per-object/per-image rows, native grid, summary, conditions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.metrics.summaries import SUMMARY_COLUMNS, compare_factors, condition_effects, summarize
from rescale4dl_bmz.metrics.tables import (PER_IMAGE_COLUMNS, PER_OBJECT_COLUMNS, evaluate_native, evaluate_pair,
                                           native_pair, per_image_table, per_object_table)
from rescale4dl_bmz.data.labels import instance_to_semantic
from rescale4dl_bmz.data.rescale import rescale_mask


def disks(shape=(96, 96), radius=7, spacing=24, drop=(), shift=(0, 0)) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    out = np.zeros(shape, np.uint16)
    k = 0
    for y in range(spacing // 2, shape[0], spacing):
        for x in range(spacing // 2, shape[1], spacing):
            k += 1
            if k not in drop:
                out[(yy - y - shift[0]) ** 2 + (xx - x - shift[1]) ** 2 <= radius ** 2] = k
    return out


def test_instance_pair_rows():
    gt = disks()
    pred = disks(drop=(3,), shift=(1, 0))
    pred[2:6, 2:6] = 99                                   # a false positive
    objects, image = evaluate_pair(gt, pred, "instance", "img", "ds2", pixel_size_um=0.1)
    assert list(image) == list(PER_IMAGE_COLUMNS) and all(list(r) == list(PER_OBJECT_COLUMNS) for r in objects)
    table = per_object_table(objects)
    gt_rows, pred_rows = table[table["source"] == "gt"], table[table["source"] == "pred"]
    assert len(gt_rows) == 16 and len(pred_rows) == 16
    assert (image["tp"], image["fp"], image["fn"]) == (15, 1, 1)
    assert image["iou"] == image["iou_instance"] == pytest.approx(gt_rows["iou"].mean())
    assert gt_rows.loc[gt_rows["label"] == 3, "iou"].item() == 0.0
    assert pred_rows.loc[pred_rows["label"] == 99, "matched_label"].item() == 0
    assert not np.isnan(image["iou_rescale4dl"]) and np.isnan(image["iou_semantic"])
    assert image["pixel_size_um"] == pytest.approx(0.2) and image["grid_scale"] == 2.0
    assert table["diameter_um"].iloc[0] == pytest.approx(table["diameter"].iloc[0] * 0.2)
    assert image["fov_area_px"] == 96 * 96 * 4            # the field on the original grid
    assert image["bytes_per_object"] == pytest.approx(96 * 96 * 2 / 16)
    assert image["pct_area_per_pixel"] == pytest.approx((100 / gt_rows["area"]).mean())
    assert image["pct_diameter_per_pixel"] == pytest.approx(100 / gt_rows["diameter"].mean())


def test_semantic_pair_gets_instance_metrics_and_diameters():
    inst = disks()
    sem = instance_to_semantic(inst)
    objects, image = evaluate_pair(sem, sem.copy(), "semantic", "img")
    assert image["iou"] == image["iou_semantic"] == 1.0 and image["iou_binary"] == 1.0
    assert (image["n_true"], image["tp"], image["fp"]) == (16, 16, 0) and image["iou_instance"] == 1.0
    assert np.isnan(image["iou_rescale4dl"])
    assert image["gt_diameter_mean"] == pytest.approx(image["pred_diameter_mean"])
    # Given instance labels replace the watershed.
    _, image = evaluate_pair(sem, sem, "semantic", "img", gt_instances=inst, pred_instances=inst)
    assert image["gt_area_mean"] == pytest.approx(np.count_nonzero(inst) / 16)


def test_native_pair_crops_and_returns_to_the_original_grid():
    gt = np.zeros((100, 100), np.uint16)
    gt[2:98, 2:98] = disks()
    pred = rescale_mask(gt[:96, :96], "ds2")
    g, p = native_pair(gt, pred, "ds2", "topleft")
    assert g.shape == p.shape == (96, 96) and np.array_equal(g, gt[:96, :96])
    g, p = native_pair(gt, rescale_mask(gt[2:98, 2:98], "ds2"), "ds2", "center")
    assert np.array_equal(g, gt[2:98, 2:98])
    np.testing.assert_array_equal(p, np.repeat(np.repeat(rescale_mask(g, "ds2"), 2, 0), 2, 1))
    g, p = native_pair(gt, rescale_mask(gt, "up2"), "up2")    # block majority back: exact
    assert np.array_equal(p, gt)
    with pytest.raises(InputError, match="covers"):
        native_pair(gt, np.zeros((60, 60), np.uint16), "ds2")
    with pytest.raises(InputError, match="multiple"):
        native_pair(gt, np.zeros((101, 100), np.uint16), "up2")


def test_native_grid_rows_are_in_original_pixels():
    gt = disks()
    objects, image = evaluate_native(gt, rescale_mask(gt, "ds2"), "instance", "img", "ds2", pixel_size_um=0.1)
    assert image["grid"] == "native" and image["grid_scale"] == 1.0 and image["image_height"] == 96
    _, og = evaluate_pair(gt, gt, "instance", "img")
    assert image["gt_diameter_mean"] == og["gt_diameter_mean"]          # the original GT, measured as is
    assert image["pct_diameter_per_pixel"] == pytest.approx(2 * og["pct_diameter_per_pixel"])  # ds2 pixels
    assert image["fov_area_px"] == 96 * 96 and image["iou"] > 0.8
    sem = instance_to_semantic(gt)
    _, image = evaluate_native(sem, rescale_mask(sem, "ds2"), "semantic", "img", "ds2")
    assert image["grid"] == "native" and image["tp"] == 16
    # Instance labels given on the original grid are cropped with it (here: centred, 2 px each side).
    big, big_sem = np.pad(gt, 2), np.pad(sem, 2)
    _, image = evaluate_native(big_sem, rescale_mask(sem, "ds2"), "semantic", "img", "ds2", "center",
                               gt_instances=big)
    assert image["image_height"] == 96 and image["gt_area_mean"] == pytest.approx(np.count_nonzero(gt) / 16)
    with pytest.raises(InputError, match="instances"):
        evaluate_native(big_sem, rescale_mask(sem, "ds2"), "semantic", "img", "ds2", gt_instances=gt)


def test_bad_options_are_refused():
    gt = disks()
    for kwargs, what in (({"task": "panoptic"}, "task"), ({"grid": "fine"}, "grid"),
                         ({"diameter": "feret"}, "diameter")):
        args = {"task": "instance", **kwargs}
        with pytest.raises(InputError, match=what):
            evaluate_pair(gt, gt, image="x", **args)
    with pytest.raises(InputError, match="outside"):
        evaluate_pair(gt, gt, "semantic", "x")
    with pytest.raises(InputError, match="shape"):
        evaluate_pair(gt, gt[:50], "instance", "x")


def _sweep_tables():
    objects, images = [], []
    for name, shift in (("a", 0), ("b", 1), ("c", 2)):
        gt = disks(shift=(shift, 0))
        for factor in ("og", "ds2"):
            g = gt if factor == "og" else rescale_mask(gt, "ds2")
            p = np.roll(g, 1 if factor == "og" else 2, axis=1)
            o, i = evaluate_pair(g, p, "instance", name, factor, pixel_size_um=0.1)
            objects += o
            images.append(i)
            o, i = evaluate_native(gt, p, "instance", name, factor, pixel_size_um=0.1)
            objects += o
            images.append(i)
    return per_object_table(objects), per_image_table(images)


def test_summary_one_row_per_factor_and_grid():
    per_object, per_image = _sweep_tables()
    s = summarize(per_image, per_object, tau=2.0)
    assert list(s.columns) == list(SUMMARY_COLUMNS)
    assert list(zip(s["grid"], s["factor"])) == [("sampled", "og"), ("sampled", "ds2"), ("native", "og"),
                                                  ("native", "ds2")]
    og, ds2 = s.iloc[0], s.iloc[1]
    assert og["iou_mean"] == pytest.approx(per_image.query("grid == 'sampled' and factor == 'og'")["iou"].mean())
    assert og["iou_ci_low"] <= og["iou_mean"] <= og["iou_ci_high"]
    # Objects per field from the density counted in the annotations, not the packing limit.
    sampled_og = per_image.query("grid == 'sampled' and factor == 'og'")
    density = sampled_og["n_true"].sum() / sampled_og["fov_area_px"].sum()
    assert og["objects_per_original_px"] == pytest.approx(density)
    assert og["throughput"] == pytest.approx(density * og["fov_area_px"] / 2.0)
    assert og["packing_throughput"] == pytest.approx(og["fov_area_px"] / og["mean_object_area_px"] / 2.0)
    assert og["packing_throughput"] > og["throughput"]
    # One bytes-per-object: the bytes of a field / the objects that field holds.
    assert og["bytes_per_object"] == pytest.approx(og["fov_area_px"] * 2 / (og["throughput"] * 2.0))
    assert ds2["pixel_size_um"] == pytest.approx(0.2)
    assert ds2["mean_object_area_px"] == pytest.approx(og["mean_object_area_px"] / 4, rel=0.1)
    assert ds2["throughput"] == pytest.approx(4 * og["throughput"], rel=0.1)
    assert ds2["packing_throughput"] == pytest.approx(4 * og["packing_throughput"], rel=0.1)
    assert (s["size_measure"] == "width").all() and (s["n_images_undefined_class"] == 0).all()
    assert ds2["bytes_per_object"] == pytest.approx(og["bytes_per_object"] / 4)
    assert ds2["gt_mean_diameter_um"] == pytest.approx(og["gt_mean_diameter_um"], rel=0.1)
    native = s[s["grid"] == "native"].set_index("factor")
    # Same objects, same factor pixels: the native D_s matches the sampled one.
    assert native.loc["ds2", "gt_mean_diameter_px"] == pytest.approx(og["gt_mean_diameter_px"] / 2)
    best = s.loc[s["test_vs_best"] == "best"]
    assert len(best) == 2 and best["p_vs_best"].isna().all()
    assert s["p_vs_best"].notna().sum() == 2 and (s["n_paired"] == 3).all()
    assert (s["iou_diff_ci_low"] <= s["iou_diff_vs_best"]).all() and (s["iou_diff_vs_best"] <= s["iou_diff_ci_high"]).all()
    assert s["ks_diameter"].between(0, 1).all() and (s["wasserstein_diameter"] >= 0).all()


def test_compare_factors_ranks_and_tests():
    per_image = pd.DataFrame({"task": "instance", "grid": "sampled", "image": list("abcdef") * 2,
                              "factor": ["og"] * 6 + ["ds2"] * 6, "scale": [1.0] * 6 + [2.0] * 6,
                              "iou": [0.80, 0.82, 0.79, 0.85, 0.81, 0.83, 0.70, 0.71, 0.69, 0.75, 0.72, 0.73]})
    c = compare_factors(per_image).set_index("factor")
    assert c.loc["og", "test_vs_best"] == "best" and c.loc["ds2", "best_factor"] == "og"
    assert c.loc["ds2", "p_vs_best"] == pytest.approx(2 / 64)       # six pairs, all worse: exact test
    assert c.loc["ds2", "mean_difference_vs_best"] == pytest.approx(-0.1)
    with pytest.raises(InputError):
        compare_factors(per_image, metric="nope")


def test_condition_effects():
    objects = []
    for name, radius in (("wt1.tif", 6), ("wt2", 6), ("pc1", 9), ("pc2", 9)):
        gt = disks(radius=radius)
        objects += evaluate_pair(gt, gt, "instance", name.removesuffix(".tif"), "og")[0]
    per_object = per_object_table(objects)
    t = condition_effects(per_object, {"wt1.tif": "WT", "wt2": "WT", "pc1": "PC190723", "pc2": "PC190723"})
    assert list(t["source"]) == ["gt", "pred"]
    row = t.iloc[0]
    assert (row["condition_a"], row["condition_b"], row["n_a"], row["n_b"]) == ("WT", "PC190723", 32, 32)
    assert row["difference"] == pytest.approx(6.0, abs=1.0) and row["p_value"] < 1e-6
    with pytest.raises(InputError, match="two"):
        condition_effects(per_object, {"wt1": "a", "wt2": "b", "pc1": "c"})
    with pytest.raises(InputError, match="no evaluated image"):
        condition_effects(per_object, {"x": "a", "y": "b"})


def test_undefined_classes_are_marked():
    """A class absent from both masks has no IoU: named per image, counted in the summary."""
    gt = np.zeros((16, 16), np.uint8)
    gt[4:6, 4:6] = 2  # a coarse object that is all edge: no inner class anywhere
    _, row = evaluate_pair(gt, gt.copy(), "semantic", "a", "ds16")
    assert row["undefined_classes"] == "inner" and np.isnan(row["iou_inner"])
    assert row["iou_semantic"] == pytest.approx(row["iou_edge"])  # the mean is the edge class alone
    full = gt.copy()
    full[8:12, 8:12] = 1
    _, row2 = evaluate_pair(full, full.copy(), "semantic", "b", "ds16")
    assert row2["undefined_classes"] == ""
    s = summarize(per_image_table([row, row2]))
    assert s.loc[0, "n_images_undefined_class"] == 1

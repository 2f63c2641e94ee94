"""Per-factor summaries of the evaluation rows (`metrics.tables`): one row per task, grid and
factor, each factor against the best, and differences between two experimental conditions.
No IO.

Summary units: `gt_mean_diameter_px` and `mean_object_area_px` are in pixels of the factor, so
they mean the same on both grids. Objects per field: `objects_per_original_px` is the density
counted in the annotations (ground truth objects / original pixels); `throughput` = density x
camera field (CAM_FOV original pixels x scale^2) / tau, the objects a field at that factor really
holds; `packing_throughput` = CAM_FOV / A_s / tau is the wall-to-wall packing limit (the paper's
TH_s). `bytes_per_object` = bytes of a field / objects it holds (the same definition as
`decide.acquisition`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.metrics.coverage import pct_diameter_per_pixel, throughput
from rescale4dl_bmz.metrics.stats import (bootstrap_ci, distribution_distance, finite_mean, finite_median,
                                          group_difference, paired_difference, paired_test)
from rescale4dl_bmz.vocabulary import GRIDS
from rescale4dl_bmz.metrics.tables import INSTANCE_SCORES, RATES, SEMANTIC_IOUS

SUMMARY_COLUMNS = (
    "task", "factor", "scale", "pixel_size_um", "grid", "n_images", "n_true", "n_pred",
    "iou_mean", "iou_ci_low", "iou_ci_high", "iou_median", *SEMANTIC_IOUS, "n_images_undefined_class", "iou_binary",
    *INSTANCE_SCORES, "tp", "fp", "fn", *RATES, "size_measure", "gt_mean_diameter_px", "gt_mean_diameter_um",
    "pred_mean_diameter_px", "mean_object_area_px",
    "pct_diameter_per_pixel", "pct_area_per_pixel", "fov_area_px", "objects_per_original_px", "tau_s", "throughput",
    "packing_throughput", "bytes_per_object",
    "best_factor", "iou_diff_vs_best", "iou_diff_ci_low", "iou_diff_ci_high", "p_vs_best", "test_vs_best",
    "n_paired", "ks_diameter", "ks_pvalue", "wasserstein_diameter")
COMPARISON_COLUMNS = (
    "task", "grid", "factor", "scale", "n_images", "mean", "ci_low", "ci_high", "best_factor", "p_vs_best",
    "test_vs_best", "n_paired", "mean_difference_vs_best", "mean_difference_ci_low", "mean_difference_ci_high",
    "ks_diameter", "ks_pvalue", "wasserstein_diameter")
CONDITION_COLUMNS = (
    "task", "grid", "factor", "scale", "source", "quantity", "condition_a", "condition_b", "n_a", "n_b",
    "mean_a", "mean_b", "difference", "hedges_g", "p_value", "p_value_welch")


_NAN = float("nan")


def _groups(per_image: pd.DataFrame):
    """(task, grid, factor) groups, grids in GRIDS order, factors finest first."""
    order = per_image.assign(_g=per_image["grid"].map({g: i for i, g in enumerate(GRIDS)}))
    order = order.sort_values(["task", "_g", "scale"], kind="stable")
    return order.groupby(["task", "grid", "factor"], sort=False)


def compare_factors(per_image: pd.DataFrame, per_object: pd.DataFrame | None = None, metric: str = "iou", *,
                    confidence: float = 0.95, n_resamples: int = 2000, seed: int | None = 0) -> pd.DataFrame:
    """Per task, grid and factor: mean `metric` over images with a bootstrap CI, the best factor
    (highest mean; the finest on a tie), a paired test over the images present at both (Wilcoxon,
    or an exact sign-flip test below 10 images) of each factor against the best, and the KS
    statistic / Wasserstein distance between GT and predicted object diameters.
    """

    if metric not in per_image.columns:
        raise InputError(f"unknown metric {metric!r}; choose a per-image column such as 'iou'")
    out = []
    for (task, grid, factor), grp in _groups(per_image):
        low, high = bootstrap_ci(grp[metric], confidence, n_resamples, seed)
        dd = None
        if per_object is not None and len(per_object):
            sel = per_object[(per_object["task"] == task) & (per_object["grid"] == grid)
                             & (per_object["factor"] == factor)]
            dd = distribution_distance(sel.loc[sel["source"] == "gt", "diameter"],
                                       sel.loc[sel["source"] == "pred", "diameter"])
        out.append({"task": task, "grid": grid, "factor": factor, "scale": float(grp["scale"].iloc[0]),
                    "n_images": int(grp["image"].nunique()), "mean": finite_mean(grp[metric]), "ci_low": low,
                    "ci_high": high, "_per_image": grp.groupby("image")[metric].mean(),
                    "ks_diameter": dd.ks_statistic if dd else _NAN, "ks_pvalue": dd.ks_pvalue if dd else _NAN,
                    "wasserstein_diameter": dd.wasserstein if dd else _NAN})
    for task, grid in dict.fromkeys((r["task"], r["grid"]) for r in out):
        sub = [r for r in out if r["task"] == task and r["grid"] == grid]
        ranked = [r for r in sub if np.isfinite(r["mean"])]
        if not ranked:
            continue
        best = max(ranked, key=lambda r: r["mean"])  # first (finest) of equal means
        for r in sub:
            r["best_factor"] = best["factor"]
            if r is best:
                r.update(p_vs_best=_NAN, test_vs_best="best", n_paired=len(best["_per_image"]),
                         mean_difference_vs_best=0.0, mean_difference_ci_low=0.0, mean_difference_ci_high=0.0)
                continue
            common = r["_per_image"].index.intersection(best["_per_image"].index)
            mine, theirs = r["_per_image"][common].to_numpy(), best["_per_image"][common].to_numpy()
            t = paired_test(mine, theirs)
            effect = paired_difference(mine, theirs, margin=0.0, confidence=confidence)
            r.update(p_vs_best=t.p_value, test_vs_best=t.method, n_paired=t.n,
                     mean_difference_vs_best=t.mean_difference, mean_difference_ci_low=effect.ci_low,
                     mean_difference_ci_high=effect.ci_high)
    return pd.DataFrame(out, columns=list(COMPARISON_COLUMNS))


def summarize(per_image: pd.DataFrame, per_object: pd.DataFrame | None = None, *, tau: float = 1.0,
              confidence: float = 0.95, n_resamples: int = 2000, seed: int | None = 0) -> pd.DataFrame:
    """One row per task, grid and factor (columns `SUMMARY_COLUMNS`).

    IoUs: means over images (`iou_mean` of the ranking IoU `iou`, with its bootstrap CI and
    median). Counts are summed; precision/recall/F1/accuracy/matched IoU/PQ pooled over all
    images. The effect size of each factor against the best (`iou_diff_vs_best`, with its paired
    Student-t CI `iou_diff_ci_low`/`iou_diff_ci_high` over the test images). `gt_mean_diameter_px`
    is D_s, the mean over images of the per-image mean GT diameter,
    in the factor's pixels (`pred_mean_diameter_px` likewise for predictions);
    `pct_diameter_per_pixel` = 100 / D_s; `pct_area_per_pixel` the mean over images of the
    per-image mean of 100 / area; `objects_per_original_px` = all GT objects / all original
    pixels evaluated; `throughput` = that density x CAM_FOV x scale^2 / tau (objects a camera
    field at the factor holds, per unit time); `packing_throughput` = CAM_FOV / A_s / tau (the
    packing limit) with A_s (`mean_object_area_px`) the mean over images of the per-image mean
    GT area (factor pixels); `bytes_per_object` = all pixels at the factor × bytes per pixel /
    all GT objects. Paired test, best factor and diameter distances: `compare_factors`.
    """

    if not tau > 0:
        raise InputError(f"time per field (tau) must be positive, got {tau}")
    rows = []
    for (task, grid, factor), grp in _groups(per_image):
        scale = float(grp["scale"].iloc[0])
        to_factor = grp["grid_scale"].to_numpy(float) / scale
        tp, fp, fn = (int(grp[k].sum()) for k in ("tp", "fp", "fn"))
        matched = float((grp["mean_matched_iou"] * grp["tp"]).sum())
        d_s = finite_mean(grp["gt_diameter_mean"].to_numpy(float) * to_factor)
        a_s = finite_mean(grp["gt_area_mean"].to_numpy(float) * to_factor ** 2)
        fov = finite_mean(grp["fov_area_px"])
        n_true = int(grp["n_true"].sum())
        area_seen = float(grp["fov_area_px"].sum())
        density = n_true / area_seen if area_seen > 0 else _NAN
        undefined = grp["undefined_classes"] if "undefined_classes" in grp else pd.Series([], dtype=object)
        measure = grp["size_measure"].dropna() if "size_measure" in grp else pd.Series([], dtype=object)
        bpo_num = (grp["bytes_per_object"].to_numpy(float) * grp["n_true"].to_numpy(float))
        row = {"task": task, "factor": factor, "scale": scale, "pixel_size_um": grp["pixel_size_um"].iloc[0],
               "grid": grid, "n_images": int(grp["image"].nunique()), "n_true": n_true,
               "n_pred": int(grp["n_pred"].sum()), "iou_mean": finite_mean(grp["iou"]),
               "iou_median": finite_median(grp["iou"]),
               **{k: finite_mean(grp[k]) for k in (*SEMANTIC_IOUS, "iou_binary", "iou_instance", "iou_rescale4dl")},
               "n_images_undefined_class": int((undefined.fillna("").astype(str).str.strip() != "").sum()),
               "size_measure": str(measure.iloc[0]) if len(measure) else "",
               "mean_matched_iou": matched / tp if tp else 0.0,
               "panoptic_quality": matched / (tp + fp / 2 + fn / 2) if tp else 0.0,
               "tp": tp, "fp": fp, "fn": fn,
               "precision": tp / (tp + fp) if tp else 0.0, "recall": tp / (tp + fn) if tp else 0.0,
               "f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0, "accuracy": tp / (tp + fp + fn) if tp else 0.0,
               "gt_mean_diameter_px": d_s, "gt_mean_diameter_um": d_s * float(grp["pixel_size_um"].iloc[0]),
               "pred_mean_diameter_px": finite_mean(grp["pred_diameter_mean"].to_numpy(float) * to_factor),
               "mean_object_area_px": a_s, "pct_diameter_per_pixel": pct_diameter_per_pixel(d_s),
               "pct_area_per_pixel": finite_mean(grp["pct_area_per_pixel"]), "fov_area_px": fov,
               "objects_per_original_px": density, "tau_s": tau,
               "throughput": density * fov * scale ** 2 / tau, "packing_throughput": throughput(fov, a_s, tau),
               "bytes_per_object": float(np.nansum(bpo_num) / n_true) if n_true else _NAN}
        rows.append(row)
    summary = pd.DataFrame(rows)
    if summary.empty:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    cmp = compare_factors(per_image, per_object, "iou", confidence=confidence, n_resamples=n_resamples, seed=seed)
    cmp = cmp.rename(columns={"ci_low": "iou_ci_low", "ci_high": "iou_ci_high",
                              "mean_difference_vs_best": "iou_diff_vs_best",
                              "mean_difference_ci_low": "iou_diff_ci_low",
                              "mean_difference_ci_high": "iou_diff_ci_high"})
    keep = ["task", "grid", "factor", "iou_ci_low", "iou_ci_high", "best_factor", "iou_diff_vs_best",
            "iou_diff_ci_low", "iou_diff_ci_high", "p_vs_best", "test_vs_best", "n_paired", "ks_diameter",
            "ks_pvalue", "wasserstein_diameter"]
    summary = summary.merge(cmp[keep], on=["task", "grid", "factor"], how="left")
    return summary[list(SUMMARY_COLUMNS)]


def _stem(name: str) -> str:
    name = str(name)
    for suffix in (".tiff", ".tif", ".png"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def condition_effects(per_object: pd.DataFrame, conditions: Mapping[str, str], quantity: str = "diameter",
                      sources: Sequence[str] = ("gt", "pred")) -> pd.DataFrame:
    """Per task, grid, factor and source: the difference of `quantity` between two conditions.

    `conditions` maps image names (with or without extension) to exactly two condition names;
    the first condition met in the mapping is `condition_a`, differences are b - a. Objects are
    the sampling units (Hedges' g, Mann-Whitney U and Welch p-values), as in the paper's wild
    type vs PC190723 comparison.
    """

    mapping = {_stem(k): str(v) for k, v in conditions.items()}
    names = list(dict.fromkeys(mapping.values()))
    if len(names) != 2:
        raise InputError(f"conditions must name exactly two groups, got {len(names)}: {', '.join(names)}")
    if quantity not in per_object.columns:
        raise InputError(f"unknown per-object quantity {quantity!r}")
    cond = per_object["image"].map(lambda n: mapping.get(_stem(n)))
    if cond.notna().sum() == 0:
        raise InputError("no evaluated image is named in the conditions table")
    data = per_object.assign(_condition=cond).dropna(subset=["_condition"])
    rows = []
    for (task, grid, factor, source), grp in data.groupby(["task", "grid", "factor", "source"], sort=False):
        if source not in sources:
            continue
        diff = group_difference(grp.loc[grp["_condition"] == names[0], quantity],
                                grp.loc[grp["_condition"] == names[1], quantity])
        rows.append({"task": task, "grid": grid, "factor": factor, "scale": float(grp["scale"].iloc[0]),
                     "source": source, "quantity": quantity, "condition_a": names[0], "condition_b": names[1],
                     **diff.as_dict()})
    table = pd.DataFrame(rows, columns=list(CONDITION_COLUMNS))
    return table.sort_values(["task", "grid", "scale", "source"], kind="stable").reset_index(drop=True)

"""Evaluation tables from arrays: a GT/prediction pair -> per-object rows + one per-image row;
all rows -> one summary row per factor and grid. No IO (`evaluation_io` reads and writes).

Grids: ``sampled`` compares on the factor's own grid (ground truth rescaled, what the paper
did); ``native`` brings the prediction back to the original grid (`native_pair`) and compares it
with the original ground truth: only there do factors compete on equal terms.

Units: lengths and areas in the per-object/per-image tables are in pixels of the grid they were
measured on (`grid_scale` = that grid's pixel size / the original one); coverage columns
(`pct_diameter_per_pixel`, `pct_area_per_pixel`) and the summary's `gt_mean_diameter_px` and
`mean_object_area_px` are in pixels of the factor, so they mean the same on both grids.
`pixel_size_um` is the factor's pixel size (original × scale), empty when unknown.

The per-image ranking column `iou` (summary: `iou_mean`) is task-agnostic: `iou_semantic` for
the semantic task, the mean per-object IoU (`iou_instance`, unmatched GT = 0) for the instance
task. Semantic runs also get instance metrics and diameters: their 0/1/2 masks become instances
with `labels.semantic_to_instances` (inner seeds, fill holes, distance-transform watershed grown
back over inner ∪ edge so objects keep their annotated size, objects under `min_size` px
dropped), applied to ground truth and prediction alike unless instance labels are given.

Object size: `diameter` names the one morphology column used as the object's size everywhere
(`size_measure` column: "width" for elongated objects, "equivalent_diameter" for round ones,
chosen once per data set by `advise.object_size_measure`); `pct_diameter_per_pixel` = 100 / it.

Classes: a semantic class absent from both ground truth and prediction has no IoU (NaN); the
per-image `undefined_classes` column names them (summary: `n_images_undefined_class`), since the
semantic mean then averages the remaining class alone (`SAMPLED_GRID_NOTE`).

Objects per field: `objects_per_original_px` is the density counted in the annotations (ground
truth objects / original pixels); `throughput` = density x camera field (CAM_FOV original pixels
x scale^2) / tau, the objects a field at that factor really holds; `packing_throughput` =
CAM_FOV / A_s / tau is the wall-to-wall packing limit (the paper's TH_s). `bytes_per_object` =
bytes of a field / objects it holds (the same definition as `planning`).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.factors import Factor, parse_factor
from rescale4dl_bmz.metrics import (bootstrap_ci, bytes_per_object, crop_iou_rescale4dl, distribution_distance,
                      group_difference, match_instances, object_morphology, paired_difference, paired_test,
                      pct_area_per_pixel,
                      pct_diameter_per_pixel, semantic_scores, throughput)
from rescale4dl_bmz.metrics._checks import as_label_image, check_same_shape
from rescale4dl_bmz.metrics.instance import index_labels
from rescale4dl_bmz.metrics.semantic import binary_iou
from rescale4dl_bmz.vocabulary import CROPS, GRIDS, TASKS

DIAMETERS = {"width": "width", "equivalent": "equivalent_diameter", "equivalent_diameter": "equivalent_diameter",
             "inscribed": "max_inscribed_diameter"}
SEMANTIC_CLASSES = {"iou_inner": "inner", "iou_edge": "edge"}
SAMPLED_GRID_NOTE = (
    "The sampled grid flatters coarse factors: there the ground truth is rescaled to the factor's "
    "own coarse grid, where small objects and thin parts have vanished from it and the 1-px edge "
    "class covers a whole object, so what is left is easier to match; when a class is absent "
    "from both masks (its IoU undefined, NaN: marked in `undefined_classes`) the semantic mean "
    "is the other class alone. The native grid compares every prediction with the same original "
    "annotation, and it alone decides.")
RANKING = {"semantic": "iou_semantic", "instance": "iou_instance"}

KEY_COLUMNS = ("task", "factor", "scale", "pixel_size_um", "grid", "grid_scale", "image")
MORPHOLOGY = ("area", "equivalent_diameter", "width", "width_skeleton", "max_inscribed_diameter", "perimeter",
              "circularity")
PER_OBJECT_COLUMNS = KEY_COLUMNS + (
    "source", "label", "matched_label", "iou", "iou_rescale4dl", *MORPHOLOGY, "size_measure", "diameter", "diameter_um",
    "pct_diameter_per_pixel", "pct_area_per_pixel")
SEMANTIC_IOUS = ("iou_inner", "iou_edge", "iou_semantic", "iou_all_labels")
INSTANCE_SCORES = ("iou_instance", "mean_matched_iou", "panoptic_quality", "iou_rescale4dl")
COUNTS = ("n_true", "n_pred", "tp", "fp", "fn")
RATES = ("precision", "recall", "f1", "accuracy")
PER_IMAGE_COLUMNS = KEY_COLUMNS + (
    "image_height", "image_width", "fov_area_px", "iou", *SEMANTIC_IOUS, "undefined_classes", "iou_binary",
    *INSTANCE_SCORES,
    *COUNTS, *RATES, "gt_area_mean", "gt_diameter_mean", "gt_diameter_median", "pred_area_mean",
    "pred_diameter_mean", "pred_diameter_median", "size_measure", "pct_diameter_per_pixel", "pct_area_per_pixel",
    "bytes_per_object")
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


# ----------------------------------------------------------------------------- checks

def _choice(value: str, allowed: Iterable[str], what: str) -> str:
    allowed = tuple(allowed)
    if value not in allowed:
        raise InputError(f"{what} {value!r} is not one of {', '.join(allowed)}")
    return value


def _mean(values) -> float:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else _NAN


def _median(values) -> float:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else _NAN


# ----------------------------------------------------------------------------- one pair

def _instances(task: str, semantic: np.ndarray, given: np.ndarray | None, min_size: int, what: str,
               style: str = "deepbacs") -> np.ndarray:
    if task == "instance":
        return semantic
    if given is not None:
        return as_label_image(given, what)
    from rescale4dl_bmz.data.labels import semantic_to_instances

    return semantic_to_instances(semantic, min_size=min_size, flood="cells", style=style)


def evaluate_pair(gt: np.ndarray, pred: np.ndarray, task: str, image: str, factor: Factor | str | float = "og",
                  grid: str = "sampled", *, pixel_size_um: float | None = None,
                  gt_instances: np.ndarray | None = None, pred_instances: np.ndarray | None = None,
                  thresh: float = 0.5, min_size: int = 10, diameter: str = "width", bytes_per_pixel: float = 2.0,
                  fov_area_px: float | None = None, grid_scale: float | None = None,
                  compat: bool | None = None, label_style: str = "deepbacs") -> tuple[list[dict], dict]:
    """Evaluate one GT/prediction pair of the same shape: (per-object rows, per-image row).

    `pixel_size_um` is the ORIGINAL pixel size (µm, None when unknown). `grid_scale` defaults to
    the factor's scale on the sampled grid and 1 on the native one. `fov_area_px` (CAM_FOV)
    defaults to the field's area on the original grid. `gt_instances`/`pred_instances` replace
    the watershed of a semantic task (`label_style`: the edge rule of the 0/1/2 masks). `compat`
    adds the original crop-based IoU (`iou_rescale4dl`; default: instance task only).
    """
    f = parse_factor(factor)
    _choice(task, TASKS, "task")
    _choice(grid, GRIDS, "grid")
    _choice(diameter, DIAMETERS, "diameter")
    g = as_label_image(gt, "ground truth")
    p = as_label_image(pred, "prediction")
    check_same_shape(g, p)
    if grid_scale is None:
        grid_scale = f.scale if grid == "sampled" else 1.0
    to_factor = grid_scale / f.scale  # grid pixels -> factor pixels (lengths)
    compat = task == "instance" if compat is None else compat

    keys = {"task": task, "factor": f.name, "scale": f.scale,
            "pixel_size_um": _NAN if pixel_size_um is None else pixel_size_um * f.scale,
            "grid": grid, "grid_scale": grid_scale, "image": str(image)}
    row = dict(keys)
    height, width = g.shape
    fov = height * width * grid_scale ** 2 if fov_area_px is None else float(fov_area_px)
    row.update(image_height=height, image_width=width, fov_area_px=fov)

    if task == "semantic":
        row.update(semantic_scores(g, p).as_dict())
        row["undefined_classes"] = " ".join(name for key, name in SEMANTIC_CLASSES.items()
                                            if not np.isfinite(row[key]))
    else:
        row.update({k: _NAN for k in SEMANTIC_IOUS}, iou_binary=binary_iou(g, p), undefined_classes="")
    gi = _instances(task, g, gt_instances, min_size, "ground-truth instances", label_style)
    pi = _instances(task, p, pred_instances, min_size, "predicted instances", label_style)
    check_same_shape(gi, pi, "ground-truth instances", "predicted instances")

    gi, pi = index_labels(gi, "ground-truth instances"), index_labels(pi, "predicted instances")
    m = match_instances(gi, pi, thresh)
    crop = crop_iou_rescale4dl(gi, pi).iou if compat else np.full(m.n_true, _NAN)
    row.update(iou_instance=m.mean_true_iou, mean_matched_iou=m.mean_matched_iou,
               panoptic_quality=m.panoptic_quality, iou_rescale4dl=_mean(crop) if m.n_true else _NAN,
               **{k: getattr(m, k) for k in COUNTS + RATES})
    row["iou"] = row[RANKING[task]]

    px_um = _NAN if pixel_size_um is None else pixel_size_um * grid_scale
    rows: list[dict] = []
    stats = {}
    for source, labels, matched, ious, compat_iou in (
            ("gt", gi, m.true_match, m.true_iou, crop),
            ("pred", pi, m.pred_match, m.pred_iou, np.full(m.n_pred, _NAN))):
        morph = object_morphology(labels)
        d = morph[DIAMETERS[diameter]]
        area_f = morph["area"] * to_factor ** 2
        cov_d = np.atleast_1d(pct_diameter_per_pixel(d * to_factor))
        cov_a = np.atleast_1d(pct_area_per_pixel(area_f))
        columns = {"label": morph["label"], "matched_label": matched, "iou": ious, "iou_rescale4dl": compat_iou,
                   **{k: morph[k] for k in MORPHOLOGY}, "size_measure": np.full(d.shape, DIAMETERS[diameter], object),
                   "diameter": d, "diameter_um": d * px_um,
                   "pct_diameter_per_pixel": cov_d, "pct_area_per_pixel": cov_a}
        names = list(columns)
        for values in zip(*(columns[k].tolist() for k in names)):
            rows.append({**keys, "source": source, **dict(zip(names, values))})
        stats[source] = (morph["area"], d, cov_a)

    g_area, g_d, g_cov = stats["gt"]
    p_area, p_d, _ = stats["pred"]
    row.update(gt_area_mean=_mean(g_area), gt_diameter_mean=_mean(g_d), gt_diameter_median=_median(g_d),
               pred_area_mean=_mean(p_area), pred_diameter_mean=_mean(p_d), pred_diameter_median=_median(p_d),
               size_measure=DIAMETERS[diameter], pct_diameter_per_pixel=pct_diameter_per_pixel(_mean(g_d) * to_factor),
               pct_area_per_pixel=_mean(g_cov),
               bytes_per_object=bytes_per_object(fov / f.scale ** 2, m.n_true, bytes_per_pixel))
    return rows, {k: row[k] for k in PER_IMAGE_COLUMNS}


def native_extent(gt_shape: Sequence[int], pred_shape: Sequence[int], factor: Factor | str | float,
                  crop: str = "topleft") -> tuple[slice, slice]:
    """Slices of the original grid covered by a prediction of `pred_shape` at `factor`.

    The field is the prediction's shape × the factor, anchored at the top-left corner or centred
    (`crop`, as the ladder cropped it).
    """
    f = parse_factor(factor)
    _choice(crop, CROPS, "crop")
    h, w = pred_shape[:2]
    if f.is_up and (h % f.step or w % f.step):
        raise InputError(f"prediction of shape {tuple(pred_shape)} at {f.name} is not a multiple of {f.step}: "
                         "it cannot be brought back to the original grid")
    eh, ew = (h * f.step, w * f.step) if f.is_down else (h // f.step, w // f.step)
    if eh > gt_shape[0] or ew > gt_shape[1]:
        raise InputError(f"prediction of shape {tuple(pred_shape)} at {f.name} covers {eh}x{ew} original pixels, "
                         f"more than the original ground truth ({gt_shape[0]}x{gt_shape[1]})")
    r0, c0 = (0, 0) if crop == "topleft" else ((gt_shape[0] - eh) // 2, (gt_shape[1] - ew) // 2)
    return slice(r0, r0 + eh), slice(c0, c0 + ew)


def native_pair(gt_native: np.ndarray, pred: np.ndarray, factor: Factor | str | float,
                crop: str = "topleft") -> tuple[np.ndarray, np.ndarray]:
    """(original GT cropped to the field the prediction covers, prediction on the original grid).

    The field: `native_extent`. Back to the original grid: pixel replication for a downsampled
    prediction, block majority for an upsampled one (`rescale.rescale_mask`).
    """
    from rescale4dl_bmz.data.rescale import rescale_mask

    f = parse_factor(factor)
    g = as_label_image(gt_native, "original ground truth")
    p = as_label_image(pred, "prediction")
    field = native_extent(g.shape, p.shape, f, crop)
    return g[field], rescale_mask(p, parse_factor(1.0 / f.scale))


def evaluate_native(gt_native: np.ndarray, pred: np.ndarray, task: str, image: str,
                    factor: Factor | str | float, crop: str = "topleft", *,
                    gt_instances: np.ndarray | None = None, pred_instances: np.ndarray | None = None,
                    min_size: int = 10, label_style: str = "deepbacs", **kwargs) -> tuple[list[dict], dict]:
    """`evaluate_pair` on the native grid: prediction back on the original grid vs the original GT.

    `gt_instances` (semantic task), on the original grid like `gt_native`, is cropped with it.
    The prediction's instances come from the watershed on the prediction's OWN grid (or
    `pred_instances`, on that grid too), then go back to the original grid with the prediction.
    """
    from rescale4dl_bmz.data.rescale import rescale_mask

    f = parse_factor(factor)
    gt_c, pred_n = native_pair(gt_native, pred, f, crop)
    gi = pi = None
    if task == "semantic":
        if gt_instances is not None:
            gi = as_label_image(gt_instances, "ground-truth instances")
            if gi.shape != np.shape(gt_native):
                raise InputError(f"ground-truth instances have shape {gi.shape} but the original ground truth "
                                 f"has shape {np.shape(gt_native)}")
            gi = gi[native_extent(gi.shape, np.shape(pred), f, crop)]
        pi = _instances(task, as_label_image(pred, "prediction"), pred_instances, min_size, "predicted instances",
                        label_style)
        pi = rescale_mask(pi, parse_factor(1.0 / f.scale))
    return evaluate_pair(gt_c, pred_n, task, image, f, "native", gt_instances=gi, pred_instances=pi,
                         min_size=min_size, label_style=label_style, **kwargs)


# ----------------------------------------------------------------------------- tables

def per_object_table(rows: Iterable[dict]):
    """The per-object rows as a DataFrame with the documented column order."""
    import pandas as pd

    return pd.DataFrame(list(rows), columns=list(PER_OBJECT_COLUMNS))


def per_image_table(rows: Iterable[dict]):
    """The per-image rows as a DataFrame with the documented column order."""
    import pandas as pd

    return pd.DataFrame(list(rows), columns=list(PER_IMAGE_COLUMNS))


def _groups(per_image):
    """(task, grid, factor) groups, grids in GRIDS order, factors finest first."""
    order = per_image.assign(_g=per_image["grid"].map({g: i for i, g in enumerate(GRIDS)}))
    order = order.sort_values(["task", "_g", "scale"], kind="stable")
    return order.groupby(["task", "grid", "factor"], sort=False)


def compare_factors(per_image, per_object=None, metric: str = "iou", *, confidence: float = 0.95,
                    n_resamples: int = 2000, seed: int | None = 0):
    """Per task, grid and factor: mean `metric` over images with a bootstrap CI, the best factor
    (highest mean; the finest on a tie), a paired test over the images present at both (Wilcoxon,
    or an exact sign-flip test below 10 images) of each factor against the best, and the KS
    statistic / Wasserstein distance between GT and predicted object diameters.
    """
    import pandas as pd

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
                    "n_images": int(grp["image"].nunique()), "mean": _mean(grp[metric]), "ci_low": low,
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


def summarize(per_image, per_object=None, *, tau: float = 1.0, confidence: float = 0.95, n_resamples: int = 2000,
              seed: int | None = 0):
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
    import pandas as pd

    if not tau > 0:
        raise InputError(f"time per field (tau) must be positive, got {tau}")
    rows = []
    for (task, grid, factor), grp in _groups(per_image):
        scale = float(grp["scale"].iloc[0])
        to_factor = grp["grid_scale"].to_numpy(float) / scale
        tp, fp, fn = (int(grp[k].sum()) for k in ("tp", "fp", "fn"))
        matched = float((grp["mean_matched_iou"] * grp["tp"]).sum())
        d_s = _mean(grp["gt_diameter_mean"].to_numpy(float) * to_factor)
        a_s = _mean(grp["gt_area_mean"].to_numpy(float) * to_factor ** 2)
        fov = _mean(grp["fov_area_px"])
        n_true = int(grp["n_true"].sum())
        area_seen = float(grp["fov_area_px"].sum())
        density = n_true / area_seen if area_seen > 0 else _NAN
        undefined = grp["undefined_classes"] if "undefined_classes" in grp else pd.Series([], dtype=object)
        measure = grp["size_measure"].dropna() if "size_measure" in grp else pd.Series([], dtype=object)
        bpo_num = (grp["bytes_per_object"].to_numpy(float) * grp["n_true"].to_numpy(float))
        row = {"task": task, "factor": factor, "scale": scale, "pixel_size_um": grp["pixel_size_um"].iloc[0],
               "grid": grid, "n_images": int(grp["image"].nunique()), "n_true": n_true,
               "n_pred": int(grp["n_pred"].sum()), "iou_mean": _mean(grp["iou"]), "iou_median": _median(grp["iou"]),
               **{k: _mean(grp[k]) for k in (*SEMANTIC_IOUS, "iou_binary", "iou_instance", "iou_rescale4dl")},
               "n_images_undefined_class": int((undefined.fillna("").astype(str).str.strip() != "").sum()),
               "size_measure": str(measure.iloc[0]) if len(measure) else "",
               "mean_matched_iou": matched / tp if tp else 0.0,
               "panoptic_quality": matched / (tp + fp / 2 + fn / 2) if tp else 0.0,
               "tp": tp, "fp": fp, "fn": fn,
               "precision": tp / (tp + fp) if tp else 0.0, "recall": tp / (tp + fn) if tp else 0.0,
               "f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0, "accuracy": tp / (tp + fp + fn) if tp else 0.0,
               "gt_mean_diameter_px": d_s, "gt_mean_diameter_um": d_s * float(grp["pixel_size_um"].iloc[0]),
               "pred_mean_diameter_px": _mean(grp["pred_diameter_mean"].to_numpy(float) * to_factor),
               "mean_object_area_px": a_s, "pct_diameter_per_pixel": pct_diameter_per_pixel(d_s),
               "pct_area_per_pixel": _mean(grp["pct_area_per_pixel"]), "fov_area_px": fov,
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


def condition_effects(per_object, conditions: Mapping[str, str], quantity: str = "diameter",
                      sources: Sequence[str] = ("gt", "pred")):
    """Per task, grid, factor and source: the difference of `quantity` between two conditions.

    `conditions` maps image names (with or without extension) to exactly two condition names;
    the first condition met in the mapping is `condition_a`, differences are b - a. Objects are
    the sampling units (Hedges' g, Mann-Whitney U and Welch p-values), as in the paper's wild
    type vs PC190723 comparison.
    """
    import pandas as pd

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

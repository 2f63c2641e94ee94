"""Evaluation rows from arrays: a GT/prediction pair -> per-object rows + one per-image row.
No IO (`evaluation_folders` reads and writes); the per-factor summaries of these rows are
in `metrics.summaries`.

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
chosen once per data set by `decide.advise.object_size_measure`); `pct_diameter_per_pixel` = 100 / it.

Classes: a semantic class absent from both ground truth and prediction has no IoU (NaN); the
per-image `undefined_classes` column names them (summary: `n_images_undefined_class`), since the
semantic mean then averages the remaining class alone (`SAMPLED_GRID_NOTE`).

Objects per field: `fov_area_px` is the field's area in original pixels (CAM_FOV);
`bytes_per_object` = bytes of a field / objects it holds (the same definition as `decide.acquisition`).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.factors import Factor, parse_factor
from rescale4dl_bmz.metrics import (bytes_per_object, crop_iou_rescale4dl, finite_mean, finite_median, match_instances,
                                    object_morphology, pct_area_per_pixel, pct_diameter_per_pixel, semantic_scores)
from rescale4dl_bmz.files.label_arrays import check_labels
from rescale4dl_bmz.metrics._checks import check_same_shape
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

_NAN = float("nan")


# ----------------------------------------------------------------------------- checks

def _choice(value: str, allowed: Iterable[str], what: str) -> str:
    allowed = tuple(allowed)
    if value not in allowed:
        raise InputError(f"{what} {value!r} is not one of {', '.join(allowed)}")
    return value


# ----------------------------------------------------------------------------- one pair

def _instances(task: str, semantic: np.ndarray, given: np.ndarray | None, min_size: int, what: str,
               style: str = "deepbacs") -> np.ndarray:
    if task == "instance":
        return semantic
    if given is not None:
        return check_labels(given, what)
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
    g = check_labels(gt, "ground truth")
    p = check_labels(pred, "prediction")
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
               panoptic_quality=m.panoptic_quality, iou_rescale4dl=finite_mean(crop) if m.n_true else _NAN,
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
    row.update(gt_area_mean=finite_mean(g_area), gt_diameter_mean=finite_mean(g_d),
               gt_diameter_median=finite_median(g_d), pred_area_mean=finite_mean(p_area),
               pred_diameter_mean=finite_mean(p_d), pred_diameter_median=finite_median(p_d),
               size_measure=DIAMETERS[diameter],
               pct_diameter_per_pixel=pct_diameter_per_pixel(finite_mean(g_d) * to_factor),
               pct_area_per_pixel=finite_mean(g_cov),
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
    g = check_labels(gt_native, "original ground truth")
    p = check_labels(pred, "prediction")
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
            gi = check_labels(gt_instances, "ground-truth instances")
            if gi.shape != np.shape(gt_native):
                raise InputError(f"ground-truth instances have shape {gi.shape} but the original ground truth "
                                 f"has shape {np.shape(gt_native)}")
            gi = gi[native_extent(gi.shape, np.shape(pred), f, crop)]
        pi = _instances(task, check_labels(pred, "prediction"), pred_instances, min_size, "predicted instances",
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

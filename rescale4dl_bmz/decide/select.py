"""Recommend the pixel size after a sweep (`select_*`): the rules, pure functions on the sweep's
tables that return a `Selection`. Its words (reason, caveat, report) come from `select_text`;
the paired statistics from `equivalence`.

Criteria (`CRITERIA`):

- ``coarsest-equivalent`` (default): the coarsest factor practically equivalent to the best
  one. Units: the test images, paired (the same image at both factors, on the chosen grid).
  Effect size: the mean IoU difference factor - best with its 1 - alpha (95 %) paired t interval
  (`metrics.paired_difference`, via `decide.equivalence`). Margin of practical equivalence:
  ``tolerance`` when given, else `equivalence.DEFAULT_MARGIN` (0.02 IoU). A factor is equivalent
  when the interval's lower bound lies above -margin; worse when its upper bound lies below
  -margin; else undecided (not chosen).
  This decides with 5 test images (a sign test cannot: its smallest p-value with 5 pairs is
  0.0625), and a factor lower than the best on every test image by more than the margin is
  never equivalent. With a single paired image, or no per-image data, only the means are left:
  equivalent when the mean is within the margin. The paired sign-flip/Wilcoxon p-value
  (`p_value`) is still reported, for reference.
- ``max-iou``: the highest mean IoU.
- ``iou-x-throughput``: the highest mean IoU x throughput (objects per unit time).
- ``diameter-fidelity``: the smallest relative error of the predicted object diameter.

Ties go to the coarser factor (more objects per field, less storage). The evaluation grid is
"native" when the tables have it (the only grid comparing factors on equal terms), else
"sampled". Each comparison is against the best factor alone (no multiple-testing correction).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rescale4dl_bmz.decide import select_text
from rescale4dl_bmz.decide.equivalence import argbest, select_equivalence
from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.factors import parse_factor
from rescale4dl_bmz.vocabulary import CRITERIA, DEFAULT_CRITERION

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_ALPHA = 0.05
# below this best mean IoU the networks have not learned the task: a ranking says nothing
MIN_USEFUL_IOU = 0.2

# Columns read from summary.csv beyond factor / iou_mean (all optional).
DIAMETER_ERROR_COLUMNS = ("diameter_rel_error", "diameter_relative_error", "diameter_error_rel")
PRED_DIAMETER_COLUMNS = ("pred_mean_diameter_px", "mean_pred_diameter_px", "pred_diameter_px")
GT_DIAMETER_COLUMNS = ("gt_mean_diameter_px", "mean_gt_diameter_px", "mean_diameter_px")
INFERENCE_TIME_COLUMNS = ("inference_s_per_image", "predict_s_per_image", "inference_time_s")


def _empty_table() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame()


@dataclass(frozen=True)
class Selection:
    """The chosen factor and why. `gains` compare it with `baseline` (og, or the finest finished
    factor when og did not finish): {name: {"ratio", "basis"}}. `caveat` says, first, what the
    answer cannot rest on (factors that failed), or is None."""

    factor: str
    scale: float
    pixel_size_um: float | None
    criterion: str
    grid: str | None
    reason: str
    best_factor: str
    gains: dict = field(default_factory=dict)
    table: pd.DataFrame = field(default_factory=_empty_table)
    baseline: str = "og"
    caveat: str | None = None
    failed: dict = field(default_factory=dict)  # factor -> stage it failed in

    @property
    def statement(self) -> str:
        """The recommendation in words, the caveat first."""
        return select_text.statement(self)

    @property
    def pixel_size_text(self) -> str:
        """'0.32 µm', or '4x the original pixel size' when the original is unknown."""
        return select_text.describe_pixel_size(self.pixel_size_um, self.scale)

    def to_dict(self) -> dict:
        """JSON-ready record (the table as a list of rows, NaN as None)."""
        return {
            "factor": self.factor, "scale": self.scale, "pixel_size_um": self.pixel_size_um,
            "pixel_size": self.pixel_size_text, "criterion": self.criterion, "grid": self.grid,
            "best_factor": self.best_factor, "reason": self.reason, "caveat": self.caveat,
            "failed": self.failed, "baseline": self.baseline, "gains": self.gains,
            "table": select_text.table_records(self.table),
        }


# ----------------------------------------------------------------------------- candidates

def select_grid(summary: pd.DataFrame, grid: str | None = None) -> str | None:
    """The evaluation grid to rank on: `grid` if given, else native, else sampled, else None."""
    if "grid" not in summary.columns:
        if grid is not None:
            raise InputError(f"the summary has no 'grid' column; cannot select grid {grid!r}")
        return None
    grids = set(summary["grid"].astype(str))
    if grid is not None:
        if grid not in grids:
            raise InputError(f"grid {grid!r} is not in the summary (it has {', '.join(sorted(grids))})")
        return grid
    for g in ("native", "sampled"):
        if g in grids:
            return g
    return sorted(grids)[0]


def select_candidates(summary: pd.DataFrame, grid: str | None) -> pd.DataFrame:
    """Finished factors on `grid`, one row each, sorted finest first, with a `scale` column."""
    import pandas as pd

    rows = summary if grid is None else summary[summary["grid"].astype(str) == grid]
    if "status" in rows.columns:
        rows = rows[rows["status"].astype(str).str.lower() == "done"]
    rows = rows[pd.to_numeric(rows["iou_mean"], errors="coerce").notna()].copy()
    if rows.empty:
        raise InputError("the run has no finished factor with a mean IoU (status 'done')"
                         + (f" on the {grid} grid" if grid else ""))
    rows["factor"] = [parse_factor(f).name for f in rows["factor"].astype(str)]
    if rows["factor"].duplicated().any():
        dup = rows.loc[rows["factor"].duplicated(), "factor"].tolist()
        raise InputError(f"the summary has several rows for factor(s) {', '.join(dup)} on one grid")
    rows["scale"] = [parse_factor(f).scale for f in rows["factor"]]
    rows["iou_mean"] = pd.to_numeric(rows["iou_mean"], errors="coerce")
    return rows.sort_values("scale").reset_index(drop=True)


# ----------------------------------------------------------------------------- scores

def select_throughput(cand: pd.DataFrame, areas: dict[str, float]) -> pd.Series:
    """Throughput per factor: the `throughput` column, else 1 / object area, else scale^2."""
    import pandas as pd

    if "throughput" in cand.columns and pd.to_numeric(cand["throughput"], errors="coerce").notna().all():
        return pd.to_numeric(cand["throughput"], errors="coerce")
    if all(f in areas for f in cand["factor"]):
        return pd.Series([1.0 / areas[f] for f in cand["factor"]], index=cand.index)
    return cand["scale"] ** 2


def select_diameter_error(cand: pd.DataFrame) -> pd.Series:
    """Relative error of the predicted object diameter per factor (needs a diameter column)."""
    import pandas as pd

    col = next((c for c in DIAMETER_ERROR_COLUMNS if c in cand.columns), None)
    if col is not None:
        return pd.to_numeric(cand[col], errors="coerce").abs()
    pred = next((c for c in PRED_DIAMETER_COLUMNS if c in cand.columns), None)
    gt = next((c for c in GT_DIAMETER_COLUMNS if c in cand.columns), None)
    if pred is None or gt is None:
        raise InputError("criterion diameter-fidelity needs a diameter error column in summary.csv "
                         f"({' or '.join(DIAMETER_ERROR_COLUMNS)}), or predicted and ground-truth diameters "
                         f"({PRED_DIAMETER_COLUMNS[0]} and {GT_DIAMETER_COLUMNS[0]})")
    p = pd.to_numeric(cand[pred], errors="coerce")
    g = pd.to_numeric(cand[gt], errors="coerce")
    return ((p - g) / g).abs()


def select_object_areas(summary: pd.DataFrame) -> dict[str, float]:
    """Mean object area in each factor's own pixels (sampled grid preferred), from the summary."""
    return _sampled_column(summary, "mean_object_area_px")


def select_gains(summary: pd.DataFrame, factor: str, baseline: str = "og") -> dict:
    """Gains of `factor` against `baseline`: objects per field of view, storage per object,
    inference speed. Measured from the summary where it has the columns (for both), else
    theoretical ((scale / baseline scale)^2).
    """
    s = parse_factor(factor).scale / parse_factor(baseline).scale
    areas = select_object_areas(summary)
    gains = {}
    if factor in areas and baseline in areas:
        gains["objects_per_fov"] = {"ratio": areas[baseline] / areas[factor], "basis": "measured object areas"}
    else:
        gains["objects_per_fov"] = {"ratio": s * s, "basis": "theoretical (scale^2)"}
    bpo = _sampled_column(summary, "bytes_per_object")
    if factor in bpo and baseline in bpo:
        gains["storage_per_object"] = {"ratio": bpo[factor] / bpo[baseline], "basis": "measured bytes per object"}
    else:
        gains["storage_per_object"] = {"ratio": 1.0 / (s * s), "basis": "theoretical (1/scale^2)"}
    col = next((c for c in INFERENCE_TIME_COLUMNS if c in summary.columns), None)
    times = _sampled_column(summary, col) if col else {}
    if factor in times and baseline in times:
        gains["inference_speed"] = {"ratio": times[baseline] / times[factor], "expected": s * s,
                                    "basis": f"measured warm ({col}); the pixel count predicts {s * s:.3g}x"}
    else:
        gains["inference_speed"] = {"ratio": s * s, "basis": "theoretical (pixels per field, scale^2)"}
    return gains


def _sampled_column(summary: pd.DataFrame, column: str) -> dict[str, float]:
    """A positive per-factor column of the summary, by factor name (sampled grid preferred)."""
    import pandas as pd

    if column not in summary.columns:
        return {}
    rows = summary
    if "grid" in rows.columns and (rows["grid"].astype(str) == "sampled").any():
        rows = rows[rows["grid"].astype(str) == "sampled"]
    out = {}
    for f, v in zip(rows["factor"].astype(str), pd.to_numeric(rows[column], errors="coerce")):
        if math.isfinite(v) and v > 0:
            out[parse_factor(f).name] = float(v)
    return out


# ----------------------------------------------------------------------------- selection

def select_factor(summary: pd.DataFrame, per_image: pd.DataFrame | None = None,
                  criterion: str = DEFAULT_CRITERION, tolerance: float | None = None, *,
                  grid: str | None = None, pixel_size_um: float | None = None,
                  alpha: float = DEFAULT_ALPHA) -> Selection:
    """Choose the factor after a sweep. `pixel_size_um` is the ORIGINAL pixel size (or None).

    The returned `Selection.table` holds one row per finished factor with the columns used
    (iou_mean, CI, delta_vs_best, p_value, equivalent, throughput, score) and `chosen`.
    """
    if criterion not in CRITERIA:
        raise InputError(f"--criterion {criterion!r} is not one of {', '.join(CRITERIA)}")
    if tolerance is not None and not (math.isfinite(tolerance) and 0 <= tolerance <= 1):
        raise InputError(f"--tolerance must be an IoU difference between 0 and 1, got {tolerance!r}")
    if not 0 < alpha < 1:
        raise InputError(f"alpha must lie between 0 and 1, got {alpha!r}")
    if pixel_size_um is not None and not (math.isfinite(pixel_size_um) and pixel_size_um > 0):
        raise InputError(f"pixel size must be positive, got {pixel_size_um!r}")
    if pixel_size_um is None:
        pixel_size_um = select_original_pixel_size(summary)
    g = select_grid(summary, grid)
    cand = select_candidates(summary, g)
    table = select_equivalence(cand, per_image, g, tolerance, alpha)
    table["throughput_score"] = select_throughput(table, select_object_areas(summary))
    best = argbest(table, table["iou_mean"], higher=True)

    if criterion == "coarsest-equivalent":
        table["score"] = table["equivalent"].astype(float)
        idx = int(table.loc[table["equivalent"], "scale"].idxmax())
    elif criterion == "max-iou":
        table["score"] = table["iou_mean"]
        idx = best
    elif criterion == "iou-x-throughput":
        table["score"] = table["iou_mean"] * table["throughput_score"]
        idx = argbest(table, table["score"], higher=True)
    else:
        table["score"] = select_diameter_error(table)
        idx = argbest(table, table["score"], higher=False)
    table["chosen"] = table.index == idx
    table["pixel_size_um"] = [None if pixel_size_um is None else pixel_size_um * s for s in table["scale"]]

    row = table.loc[idx]
    factor = str(row["factor"])
    size = None if pixel_size_um is None else pixel_size_um * float(row["scale"])
    finished = list(table["factor"])
    failed = select_failed(summary)
    baseline = select_baseline(finished)
    caveat = select_text.caveat_text(baseline, select_og_absence(summary, finished, failed), failed,
                                     select_trust_issues(table, best), table.loc[best])
    return Selection(factor=factor, scale=float(row["scale"]), pixel_size_um=size, criterion=criterion,
                     grid=g, reason=select_text.reason_text(criterion, table, idx, best),
                     best_factor=str(table.loc[best, "factor"]),
                     gains=select_gains(summary, factor, baseline), table=table, baseline=baseline,
                     caveat=caveat, failed=failed)


def select_failed(summary: pd.DataFrame) -> dict[str, str]:
    """Factors the run asked for that did not finish: factor -> the stage they failed in."""
    import pandas as pd

    if "status" not in summary.columns:
        return {}
    rows = summary[summary["status"].astype(str).str.lower() == "failed"]
    stages = rows["failed_stage"] if "failed_stage" in rows.columns else pd.Series("", index=rows.index)
    return {parse_factor(str(f)).name: ("" if pd.isna(st) else str(st)) for f, st in zip(rows["factor"], stages)}


def select_baseline(finished: list[str]) -> str:
    """What gains are stated against: og (the sampling the data were acquired at) when it
    finished, else the finest factor that did."""
    return "og" if "og" in finished else min(finished, key=lambda f: parse_factor(f).scale)


def select_og_absence(summary: pd.DataFrame, finished: list[str], failed: dict[str, str]) -> str | None:
    """Why og cannot be the baseline: 'failed', 'pruned' (asked for, never run), 'stopped' (by
    successive halving) or 'not in sweep';
    None when it finished."""
    if "og" in failed:
        return "failed"
    if "og" in finished:
        return None
    asked = set(summary["factor"].astype(str)) if "factor" in summary.columns else set()
    if "og" in asked and "status" in summary.columns:
        if (summary.loc[summary["factor"].astype(str) == "og", "status"].astype(str) == "stopped").any():
            return "stopped"  # by successive halving
    return "pruned" if "og" in asked else "not in sweep"


def select_trust_issues(table: pd.DataFrame, best: int) -> tuple[str, ...]:
    """What makes the ranking itself untrustworthy: 'untrained' (the best mean IoU is below
    `MIN_USEFUL_IOU`: the models learned nothing), 'one image' (a comparison resting on a single
    test image)."""
    import pandas as pd

    issues = []
    if table.loc[best, "iou_mean"] < MIN_USEFUL_IOU:
        issues.append("untrained")
    n_images = int(pd.to_numeric(table.get("n_paired", pd.Series([0])), errors="coerce").fillna(0).max())
    if len(table) > 1 and n_images <= 1:
        issues.append("one image")
    return tuple(issues)


def select_original_pixel_size(summary: pd.DataFrame) -> float | None:
    """The original pixel size implied by the summary's `pixel_size_um` column, or None."""
    import pandas as pd

    if "pixel_size_um" not in summary.columns:
        return None
    for f, p in zip(summary["factor"].astype(str), pd.to_numeric(summary["pixel_size_um"], errors="coerce")):
        if math.isfinite(p) and p > 0:
            return float(p) / parse_factor(f).scale
    return None

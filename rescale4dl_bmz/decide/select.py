"""Recommend the pixel size after a sweep (`select_*`): pure functions on the sweep's tables.

Criteria (`CRITERIA`):

- ``coarsest-equivalent`` (default): the coarsest factor practically equivalent to the best
  one. Units: the test images, paired (the same image at both factors, on the chosen grid).
  Effect size: the mean IoU difference factor - best with its 1 - alpha (95 %) paired t interval
  (`metrics.paired_difference`). Margin of practical equivalence: ``tolerance`` when given,
  else `DEFAULT_MARGIN` (0.02 IoU). A factor is equivalent when the interval's lower bound lies
  above -margin; worse when its upper bound lies below -margin; else undecided (not chosen).
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

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.factors import parse_factor
from rescale4dl_bmz.vocabulary import CRITERIA, DEFAULT_CRITERION

DEFAULT_ALPHA = 0.05
# below this best mean IoU the networks have not learned the task: a ranking says nothing
MIN_USEFUL_IOU = 0.2
DEFAULT_MARGIN = 0.02  # IoU: the margin of practical equivalence when no tolerance is given

# Columns read from summary.csv beyond factor / iou_mean (all optional).
DIAMETER_ERROR_COLUMNS = ("diameter_rel_error", "diameter_relative_error", "diameter_error_rel")
PRED_DIAMETER_COLUMNS = ("pred_mean_diameter_px", "mean_pred_diameter_px", "pred_diameter_px")
GT_DIAMETER_COLUMNS = ("gt_mean_diameter_px", "mean_gt_diameter_px", "mean_diameter_px")
INFERENCE_TIME_COLUMNS = ("inference_s_per_image", "predict_s_per_image", "inference_time_s")


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
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    baseline: str = "og"
    caveat: str | None = None
    failed: dict = field(default_factory=dict)  # factor -> stage it failed in

    @property
    def statement(self) -> str:
        """The recommendation in words, the caveat first."""
        text = f"recommended pixel size: {self.pixel_size_text} (factor {self.factor}); {self.reason}"
        return f"{self.caveat} {text[0].upper()}{text[1:]}" if self.caveat else text

    @property
    def pixel_size_text(self) -> str:
        """'0.32 µm', or '4x the original pixel size' when the original is unknown."""
        return describe_pixel_size(self.pixel_size_um, self.scale)

    def to_dict(self) -> dict:
        """JSON-ready record (the table as a list of rows, NaN as None)."""
        return {
            "factor": self.factor, "scale": self.scale, "pixel_size_um": self.pixel_size_um,
            "pixel_size": self.pixel_size_text, "criterion": self.criterion, "grid": self.grid,
            "best_factor": self.best_factor, "reason": self.reason, "caveat": self.caveat,
            "failed": self.failed, "baseline": self.baseline, "gains": self.gains,
            "table": table_records(self.table),
        }


def describe_pixel_size(pixel_size_um: float | None, scale: float) -> str:
    if pixel_size_um is not None:
        return f"{pixel_size_um:.4g} µm"
    return f"{scale:g}x the original pixel size"


def table_records(table: pd.DataFrame) -> list[dict]:
    """Rows as plain dicts with Python scalars; NaN becomes None."""
    out = []
    for row in table.to_dict(orient="records"):
        out.append({k: _plain(v) for k, v in row.items()})
    return out


def _plain(v):
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(float(v)) else float(v)
    if v is None or (isinstance(v, str)):
        return v
    try:
        return None if pd.isna(v) else v
    except (TypeError, ValueError):
        return v


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


# ----------------------------------------------------------------------------- statistics

@dataclass(frozen=True)
class PairedDecision:
    """One factor against the best: the paired test and whether it can decide at all."""

    n: int
    p_value: float
    mean_difference: float  # factor - best (negative: worse)
    method: str
    min_p_value: float      # the smallest p-value the test can give with n pairs

    def worse(self, alpha: float) -> bool | None:
        """True/False when the test can decide at `alpha`, None when it cannot."""
        if self.n < 2 or not self.min_p_value < alpha:
            return None
        return bool(self.mean_difference < 0 and self.p_value < alpha)


@functools.lru_cache(maxsize=64)
def _min_p_value(n: int) -> float:
    """The smallest p-value `paired_test` can return for n pairs (all differences one-signed)."""
    from rescale4dl_bmz.metrics import paired_test

    return float(paired_test(np.arange(1.0, n + 1.0), np.zeros(n)).p_value) if n >= 2 else float("nan")


def select_paired_test(best: np.ndarray, other: np.ndarray) -> PairedDecision:
    """The metrics helper's paired test of `other` against `best` (same images, same order)."""
    from rescale4dl_bmz.metrics import paired_test

    t = paired_test(np.asarray(other, float), np.asarray(best, float))
    return PairedDecision(int(t.n), float(t.p_value), float(t.mean_difference), str(t.method), _min_p_value(int(t.n)))


def _paired_values(per_image: pd.DataFrame, grid: str | None, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    rows = per_image
    if grid is not None and "grid" in rows.columns:
        rows = rows[rows["grid"].astype(str) == grid]
    ia = rows[rows["factor"] == a].groupby("image")["iou"].mean()
    ib = rows[rows["factor"] == b].groupby("image")["iou"].mean()
    common = ia.index.intersection(ib.index)
    va, vb = ia.loc[common].to_numpy(float), ib.loc[common].to_numpy(float)
    keep = np.isfinite(va) & np.isfinite(vb)
    return va[keep], vb[keep]


def select_equivalence(cand: pd.DataFrame, per_image: pd.DataFrame | None, grid: str | None,
                       tolerance: float | None, alpha: float) -> pd.DataFrame:
    """Each factor against the best: effect size with its CI and the equivalence decision.

    Adds delta_vs_best (best - factor mean), units, n_paired, iou_diff (factor - best, mean over
    the paired units), iou_diff_ci_low/high (95 % paired t interval), margin, n_lower_by_margin
    (units where the factor is lower than the best by more than the margin), p_value (paired
    sign-flip/Wilcoxon, for reference), decision (best/equivalent/worse/undecided), test and
    equivalent. See the module docstring for the rule.
    """
    from rescale4dl_bmz.metrics import paired_difference

    out = cand.copy()
    best = _argbest(out, out["iou_mean"], higher=True)
    best_row = out.loc[best]
    margin = DEFAULT_MARGIN if tolerance is None else float(tolerance)
    out["delta_vs_best"] = best_row["iou_mean"] - out["iou_mean"]
    out["units"] = "test images"
    out["n_paired"] = 0
    for col in ("iou_diff", "iou_diff_ci_low", "iou_diff_ci_high", "p_value"):
        out[col] = np.nan
    out["margin"] = margin
    out["n_lower_by_margin"] = 0
    have_images = per_image is not None and not per_image.empty
    decisions, tests = [], []
    for i, row in out.iterrows():
        if i == best:
            out.loc[i, ["n_paired", "iou_diff", "iou_diff_ci_low", "iou_diff_ci_high"]] = [
                _n_images(per_image, grid, row["factor"]), 0.0, 0.0, 0.0]
            decisions.append("best")
            tests.append("best")
            continue
        effect = None
        if have_images:
            vb, vo = _paired_values(per_image, grid, best_row["factor"], row["factor"])
            effect = paired_difference(vo, vb, margin, confidence=1 - alpha)
            decision = select_paired_test(vb, vo)
            out.loc[i, ["n_paired", "iou_diff", "iou_diff_ci_low", "iou_diff_ci_high", "p_value",
                        "n_lower_by_margin"]] = [effect.n, effect.mean_difference, effect.ci_low, effect.ci_high,
                                                 decision.p_value, effect.n_below_margin]
        if effect is not None and effect.decision != "too few pairs":
            decisions.append(effect.decision)
            tests.append(f"paired t 95% CI vs margin {margin:g} ({effect.n} test images)")
            continue
        # One paired image or none: only the means can speak.
        diff = -float(row["delta_vs_best"])
        if pd.isna(out.loc[i, "iou_diff"]):
            out.loc[i, "iou_diff"] = diff
        decisions.append("equivalent" if diff >= -margin - 1e-12 else "worse")
        n = 0 if effect is None else effect.n
        tests.append(f"means only ({n} paired image{'s' if n != 1 else ''}), margin {margin:g}")
        if n == 0:
            out.loc[i, "units"] = "factor means"
    out["decision"] = decisions
    out["test"] = tests
    out["equivalent"] = [d in ("best", "equivalent") for d in decisions]
    return out


def _n_images(per_image: pd.DataFrame | None, grid: str | None, factor: str) -> int:
    if per_image is None or per_image.empty:
        return 0
    rows = per_image[per_image["factor"] == factor]
    if grid is not None and "grid" in rows.columns:
        rows = rows[rows["grid"].astype(str) == grid]
    return int(rows["image"].nunique())


def _argbest(table: pd.DataFrame, score: pd.Series, higher: bool) -> int:
    """Index of the best score; ties go to the coarsest factor (largest scale)."""
    s = pd.to_numeric(score, errors="coerce")
    if s.notna().sum() == 0:
        raise InputError("no factor has a usable score for this criterion")
    target = s.max() if higher else s.min()
    tied = table.index[(s - target).abs() <= 1e-12 * max(1.0, abs(target))]
    return int(table.loc[tied, "scale"].idxmax())


# ----------------------------------------------------------------------------- scores

def select_throughput(cand: pd.DataFrame, areas: dict[str, float]) -> pd.Series:
    """Throughput per factor: the `throughput` column, else 1 / object area, else scale^2."""
    if "throughput" in cand.columns and pd.to_numeric(cand["throughput"], errors="coerce").notna().all():
        return pd.to_numeric(cand["throughput"], errors="coerce")
    if all(f in areas for f in cand["factor"]):
        return pd.Series([1.0 / areas[f] for f in cand["factor"]], index=cand.index)
    return cand["scale"] ** 2


def select_diameter_error(cand: pd.DataFrame) -> pd.Series:
    """Relative error of the predicted object diameter per factor (needs a diameter column)."""
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
    if "mean_object_area_px" not in summary.columns:
        return {}
    rows = summary
    if "grid" in rows.columns and (rows["grid"].astype(str) == "sampled").any():
        rows = rows[rows["grid"].astype(str) == "sampled"]
    out = {}
    for f, a in zip(rows["factor"].astype(str), pd.to_numeric(rows["mean_object_area_px"], errors="coerce")):
        if math.isfinite(a) and a > 0:
            out[parse_factor(f).name] = float(a)
    return out


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
    best = _argbest(table, table["iou_mean"], higher=True)

    if criterion == "coarsest-equivalent":
        table["score"] = table["equivalent"].astype(float)
        idx = int(table.loc[table["equivalent"], "scale"].idxmax())
    elif criterion == "max-iou":
        table["score"] = table["iou_mean"]
        idx = best
    elif criterion == "iou-x-throughput":
        table["score"] = table["iou_mean"] * table["throughput_score"]
        idx = _argbest(table, table["score"], higher=True)
    else:
        table["score"] = select_diameter_error(table)
        idx = _argbest(table, table["score"], higher=False)
    table["chosen"] = table.index == idx
    table["pixel_size_um"] = [None if pixel_size_um is None else pixel_size_um * s for s in table["scale"]]

    row = table.loc[idx]
    factor = str(row["factor"])
    size = None if pixel_size_um is None else pixel_size_um * float(row["scale"])
    reason = _reason(criterion, table, idx, best, tolerance, alpha)
    failed = select_failed(summary)
    baseline, caveat = select_baseline(summary, list(table["factor"]), failed)
    caveat = " ".join(c for c in (caveat, select_trust_warnings(table, best)) if c) or None
    return Selection(factor=factor, scale=float(row["scale"]), pixel_size_um=size, criterion=criterion,
                     grid=g, reason=reason, best_factor=str(table.loc[best, "factor"]),
                     gains=select_gains(summary, factor, baseline), table=table, baseline=baseline,
                     caveat=caveat, failed=failed)


def select_failed(summary: pd.DataFrame) -> dict[str, str]:
    """Factors the run asked for that did not finish: factor -> the stage they failed in."""
    if "status" not in summary.columns:
        return {}
    rows = summary[summary["status"].astype(str).str.lower() == "failed"]
    stages = rows["failed_stage"] if "failed_stage" in rows.columns else pd.Series("", index=rows.index)
    return {parse_factor(str(f)).name: ("" if pd.isna(st) else str(st)) for f, st in zip(rows["factor"], stages)}


def select_baseline(summary: pd.DataFrame, finished: list[str], failed: dict[str, str]) -> tuple[str, str | None]:
    """What gains are stated against, and the caveat that opens the recommendation.

    og (the sampling the data were acquired at) when it finished; otherwise the finest factor
    that did, named as such. A caveat names every factor that failed: nothing is claimed
    against them."""
    finest = min(finished, key=lambda f: parse_factor(f).scale)
    baseline = "og" if "og" in finished else finest
    parts = []
    if "og" in failed:
        parts.append(f"The original sampling (og) failed{_in(failed['og'])}, so nothing here is compared with "
                     f"it: gains are stated against {baseline}, the finest factor that finished.")
    elif baseline != "og":
        asked = set(summary["factor"].astype(str)) if "factor" in summary.columns else set()
        why = "was pruned" if "og" in asked else "was not in this sweep"
        parts.append(f"The original sampling (og) {why}: gains are stated against {baseline}, the finest factor "
                     "that finished.")
    others = {f: st for f, st in failed.items() if f != "og"}
    if others:
        listed = ", ".join(f"{f}{_in(st)}" for f, st in sorted(others.items(), key=lambda x: parse_factor(x[0]).scale))
        parts.append(f"{len(others)} factor(s) failed and are not compared: {listed}; the answer is partial.")
    return baseline, " ".join(parts) or None


def select_trust_warnings(table: pd.DataFrame, best: int) -> str | None:
    """What makes the ranking itself untrustworthy, in words: models that learned nothing, or a
    comparison resting on a single test image."""
    parts = []
    top = table.loc[best]
    if top["iou_mean"] < MIN_USEFUL_IOU:
        parts.append(f"The best mean IoU is only {top['iou_mean']:.2f} ({top['factor']}): the models have not learned "
                     "to segment these images (too short a training, or too few annotations), so this ranking says "
                     "nothing about the pixel size; train longer before acting on it.")
    n_images = int(pd.to_numeric(table.get("n_paired", pd.Series([0])), errors="coerce").fillna(0).max())
    if len(table) > 1 and n_images <= 1:
        parts.append("Only one test image was evaluated, so factors are compared by their means alone, with no "
                     "interval or test behind them; hold out more images for a decision you can rely on.")
    return " ".join(parts) or None


def _in(stage: str) -> str:
    from rescale4dl_bmz.errors import STAGE_WORDS

    return f" during {STAGE_WORDS.get(stage, stage)}" if stage else ""


def select_original_pixel_size(summary: pd.DataFrame) -> float | None:
    """The original pixel size implied by the summary's `pixel_size_um` column, or None."""
    if "pixel_size_um" not in summary.columns:
        return None
    for f, p in zip(summary["factor"].astype(str), pd.to_numeric(summary["pixel_size_um"], errors="coerce")):
        if math.isfinite(p) and p > 0:
            return float(p) / parse_factor(f).scale
    return None


def _iou_text(row: pd.Series) -> str:
    text = f"{row['iou_mean']:.3f}"
    lo, hi = row.get("iou_ci_low", np.nan), row.get("iou_ci_high", np.nan)
    enough = pd.isna(row.get("n_images", np.nan)) or row.get("n_images") >= 2  # one image has no interval
    if pd.notna(lo) and pd.notna(hi) and enough:
        text += f" (95% CI {float(lo):.3f}-{float(hi):.3f})"
    return text


def _reason(criterion: str, table: pd.DataFrame, idx: int, best: int, tolerance: float | None,
            alpha: float) -> str:
    row, brow = table.loc[idx], table.loc[best]
    grid = f" on the {row['grid']} grid" if "grid" in table.columns else ""
    where = f"{row['factor']}: mean IoU {_iou_text(row)}{grid}"
    if criterion == "max-iou":
        return f"{where} is the highest mean IoU of {len(table)} finished factors."
    if criterion == "iou-x-throughput":
        return f"{where}; mean IoU x throughput = {row['score']:.4g} is the highest of {len(table)} factors."
    if criterion == "diameter-fidelity":
        return (f"{where}; its predicted object diameters deviate least from the ground truth "
                f"(relative error {row['score']:.3g}).")
    if idx == best:
        coarser = table[table["scale"] > row["scale"]]
        tail = ""
        if not coarser.empty:
            worst = coarser.iloc[0]
            tail = f" No coarser factor is equivalent ({worst['factor']}: {_why_not(worst, tolerance, alpha)})."
        return f"{where} is the best factor and the coarsest equivalent one.{tail}"
    why = (f"practically equivalent to the best: IoU difference {_diff_text(row)} stays above "
           f"-{row['margin']:g} ({row['test']})")
    return (f"{where} is the coarsest factor whose IoU is {why}; best: {brow['factor']} "
            f"{_iou_text(brow)}.")


def _diff_text(row: pd.Series) -> str:
    """'-0.012 (95% CI -0.020 to -0.004)' or '-0.012'."""
    text = f"{row['iou_diff']:+.3f}"
    if pd.notna(row.get("iou_diff_ci_low")) and pd.notna(row.get("iou_diff_ci_high")):
        text += f" (95% CI {row['iou_diff_ci_low']:+.3f} to {row['iou_diff_ci_high']:+.3f})"
    return text


def _why_not(row: pd.Series, tolerance: float | None, alpha: float) -> str:
    lower = f", lower on {int(row['n_lower_by_margin'])} of {int(row['n_paired'])} images by more than the margin" \
        if row.get("n_paired", 0) else ""
    return f"{row['decision']}: IoU difference {_diff_text(row)} vs margin -{row['margin']:g}{lower}"


# ----------------------------------------------------------------------------- text

def select_format(selection: Selection) -> str:
    """A short report: caveat, choice, pixel size, reason, gains against the baseline, ranking table."""
    s = selection
    lines = [f"Chosen factor: {s.factor} (scale {s.scale:g}, criterion {s.criterion})",
             f"Recommended pixel size: {s.pixel_size_text}",
             f"Why: {s.reason}", f"Gains against {s.baseline}:"]
    if s.caveat:
        lines.insert(0, f"NOTE: {s.caveat}")
    labels = {"objects_per_fov": "objects per field of view", "storage_per_object": "storage per object",
              "inference_speed": "inference speed"}
    for key, label in labels.items():
        g = s.gains.get(key)
        if g:
            less = f" ({1 / g['ratio']:.3g}x less)" if g["ratio"] < 1 else ""
            lines.append(f"  {label}: x{g['ratio']:.3g}{less} [{g['basis']}]")
    lines.append("")
    cols = [("", None), ("factor", "factor"), ("pixel size", "pixel_size_um"), ("mean IoU", "iou_mean"),
            ("95% CI", None), ("diff vs best (95% CI)", "iou_diff"), ("p", "p_value"), ("decision", "decision")]
    rows = []
    for _, r in s.table.iterrows():
        ci = ""
        if pd.notna(r.get("iou_ci_low", np.nan)) and pd.notna(r.get("iou_ci_high", np.nan)):
            ci = f"{float(r['iou_ci_low']):.3f}-{float(r['iou_ci_high']):.3f}"
        px = "" if r["pixel_size_um"] is None or pd.isna(r["pixel_size_um"]) else f"{r['pixel_size_um']:.4g} µm"
        p = "" if pd.isna(r["p_value"]) else f"{r['p_value']:.3g}"
        rows.append(["->" if r["chosen"] else "", r["factor"], px, f"{r['iou_mean']:.3f}", ci,
                     _diff_text(r).replace("95% CI ", ""), p, r["decision"]])
    heads = [c[0] for c in cols]
    widths = [max(len(str(x)) for x in col) for col in zip(heads, *rows)]
    for cells in [heads] + rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip())
    return "\n".join(lines) + "\n"

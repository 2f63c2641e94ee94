"""Each finished factor against the best one: paired effect size, its interval, and the
practical-equivalence decision (the statistics behind `select`'s default criterion).

Units: the test images, paired (the same image at both factors, on one grid). A factor is
equivalent when the 1 - alpha paired t interval of its mean IoU difference (factor - best) lies
above -margin, worse when it lies below, else undecided; with one paired image or none only
the means are compared with the margin. The paired sign-flip/Wilcoxon p-value is reported for
reference. Pure functions on tables; pandas is imported where used (the CLI's --help stays fast).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rescale4dl_bmz.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_MARGIN = 0.02  # IoU: the margin of practical equivalence when no tolerance is given


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


def _on_grid(per_image: pd.DataFrame, grid: str | None) -> pd.DataFrame:
    if grid is not None and "grid" in per_image.columns:
        return per_image[per_image["grid"].astype(str) == grid]
    return per_image


def _paired_values(per_image: pd.DataFrame, grid: str | None, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-image IoUs of factors `a` and `b` on the images both have (finite at both)."""
    rows = _on_grid(per_image, grid)
    ia = rows[rows["factor"] == a].groupby("image")["iou"].mean()
    ib = rows[rows["factor"] == b].groupby("image")["iou"].mean()
    common = ia.index.intersection(ib.index)
    va, vb = ia.loc[common].to_numpy(float), ib.loc[common].to_numpy(float)
    keep = np.isfinite(va) & np.isfinite(vb)
    return va[keep], vb[keep]


def _n_images(per_image: pd.DataFrame | None, grid: str | None, factor: str) -> int:
    if per_image is None or per_image.empty:
        return 0
    rows = _on_grid(per_image[per_image["factor"] == factor], grid)
    return int(rows["image"].nunique())


def argbest(table: pd.DataFrame, score: pd.Series, higher: bool) -> int:
    """Index of the best score; ties go to the coarsest factor (largest scale)."""
    import pandas as pd

    s = pd.to_numeric(score, errors="coerce")
    if s.notna().sum() == 0:
        raise InputError("no factor has a usable score for this criterion")
    target = s.max() if higher else s.min()
    tied = table.index[(s - target).abs() <= 1e-12 * max(1.0, abs(target))]
    return int(table.loc[tied, "scale"].idxmax())


def select_equivalence(cand: pd.DataFrame, per_image: pd.DataFrame | None, grid: str | None,
                       tolerance: float | None, alpha: float) -> pd.DataFrame:
    """Each factor against the best: effect size with its CI and the equivalence decision.

    Adds delta_vs_best (best - factor mean), units, n_paired, iou_diff (factor - best, mean over
    the paired units), iou_diff_ci_low/high (95 % paired t interval), margin, n_lower_by_margin
    (units where the factor is lower than the best by more than the margin), p_value (paired
    sign-flip/Wilcoxon, for reference), decision (best/equivalent/worse/undecided), test and
    equivalent. See the module docstring for the rule.
    """
    import pandas as pd

    from rescale4dl_bmz.metrics import paired_difference

    out = cand.copy()
    best = argbest(out, out["iou_mean"], higher=True)
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

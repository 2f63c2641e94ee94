"""Statistics for choosing between factors (pure numpy/scipy).

- `finite_mean`, `finite_median`: of the finite values only (NaN when none), for table columns.
- `bootstrap_ci`: percentile bootstrap confidence interval of a mean (NaNs dropped).
- `paired_test`: is a factor's per-image IoU different from the best factor's? Wilcoxon
  signed-rank for 10 or more pairs; for fewer, an exact sign-flip permutation test on the mean
  difference (the smallest two-sided p-value it can give is 2 / 2^n).
- `paired_difference`: the effect size of a factor against the best, mean paired difference
  a - b with its Student-t confidence interval (units: the pairs, e.g. test images), and the
  practical-equivalence decision against a margin: "equivalent" when the interval's lower
  bound lies above -margin, "worse" when its upper bound lies below -margin, else "undecided".
  Unlike a sign test it decides with 5 images when the differences are consistent, and it
  never calls equivalent a factor lower on every pair by more than the margin (its mean, and
  so its lower bound, are then below -margin).
- `distribution_distance`: two-sample Kolmogorov-Smirnov statistic (and p-value) and the
  Wasserstein (earth mover's) distance, e.g. between GT and predicted diameters.
- `group_difference`: effect size (Hedges' g) and p-values (Mann-Whitney U; Welch's t) of the
  difference between two groups, e.g. cell diameters of two conditions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

WILCOXON_MIN_PAIRS = 10
_NAN = float("nan")


def _finite(values) -> np.ndarray:
    v = np.asarray(values, float).ravel()
    return v[np.isfinite(v)]


def finite_mean(values) -> float:
    """Mean of the finite values (NaN and inf dropped); NaN when there are none."""
    v = _finite(values)
    return float(v.mean()) if v.size else _NAN


def finite_median(values) -> float:
    """Median of the finite values (NaN and inf dropped); NaN when there are none."""
    v = _finite(values)
    return float(np.median(v)) if v.size else _NAN


def bootstrap_ci(values, confidence: float = 0.95, n_resamples: int = 2000,
                 seed: int | None = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean; (nan, nan) for fewer than 2 values (one image gives
    no interval), (v, v) when every value is the same."""
    v = _finite(values)
    if v.size < 2:
        return _NAN, _NAN
    if np.all(v == v[0]):
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    block = max(1, 2_000_000 // v.size)  # bound the memory of one resample block
    for start in range(0, n_resamples, block):
        stop = min(start + block, n_resamples)
        means[start:stop] = v[rng.integers(0, v.size, size=(stop - start, v.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedTest:
    """Result of a paired two-sided test of a - b."""

    n: int
    mean_difference: float
    statistic: float
    p_value: float
    method: str

    def as_dict(self) -> dict:
        return asdict(self)


def _sign_flip_p(d: np.ndarray) -> tuple[float, float]:
    """Exact two-sided sign-flip permutation p-value of the mean difference (n <= 20)."""
    n = d.size
    signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)[None, :]) & 1)
    means = (signs * d[None, :]).mean(axis=1)
    observed = abs(d.mean())
    return float(d.mean()), float(np.mean(np.abs(means) >= observed - 1e-12 * max(1.0, observed)))


def _paired_differences(a, b) -> np.ndarray:
    """a - b over the pairs where both are finite (same order = same units)."""
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length ({a.size} vs {b.size})")
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep] - b[keep]


def paired_test(a, b) -> PairedTest:
    """Two-sided paired test of a vs b (same order = same images); pairs with a NaN are dropped."""
    d = _paired_differences(a, b)
    n = int(d.size)
    if n < 2:
        return PairedTest(n, float(d.mean()) if n else _NAN, _NAN, _NAN, "too few pairs")
    if np.all(d == 0):
        return PairedTest(n, 0.0, 0.0, 1.0, "identical")
    if n >= WILCOXON_MIN_PAIRS:
        from scipy.stats import wilcoxon

        res = wilcoxon(d)
        return PairedTest(n, float(d.mean()), float(res.statistic), float(res.pvalue), "wilcoxon")
    stat, p = _sign_flip_p(d)
    return PairedTest(n, float(d.mean()), stat, p, "sign-flip permutation (exact)")


@dataclass(frozen=True)
class PairedDifference:
    """Mean of a - b over n pairs with its confidence interval, and the decision at `margin`."""

    n: int
    mean_difference: float
    ci_low: float
    ci_high: float
    confidence: float
    margin: float
    n_below_margin: int   # pairs where a < b - margin
    decision: str         # "equivalent" | "worse" | "undecided" | "too few pairs"

    def as_dict(self) -> dict:
        return asdict(self)


def paired_difference(a, b, margin: float, confidence: float = 0.95) -> PairedDifference:
    """Mean difference a - b (same order = same units) with a paired Student-t CI, and whether a
    is practically equivalent to b within `margin` (see the module docstring). NaN pairs dropped."""
    from scipy.stats import t as student_t

    if not (np.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a non-negative number, got {margin!r}")
    d = _paired_differences(a, b)
    n = int(d.size)
    below = int(np.sum(d < -margin - 1e-12))
    if n < 2:
        mean = float(d.mean()) if n else _NAN
        return PairedDifference(n, mean, _NAN, _NAN, confidence, margin, below, "too few pairs")
    mean = float(d.mean())
    half = float(student_t.ppf(0.5 + confidence / 2, n - 1) * d.std(ddof=1) / np.sqrt(n))
    low, high = mean - half, mean + half
    if low > -margin:
        decision = "equivalent"
    elif high < -margin:
        decision = "worse"
    else:
        decision = "undecided"
    return PairedDifference(n, mean, low, high, confidence, margin, below, decision)


@dataclass(frozen=True)
class DistributionDistance:
    n_a: int
    n_b: int
    ks_statistic: float
    ks_pvalue: float
    wasserstein: float

    def as_dict(self) -> dict:
        return asdict(self)


def distribution_distance(a, b) -> DistributionDistance:
    """KS statistic and p-value, and Wasserstein distance, between two samples (NaN if one is empty)."""
    from scipy.stats import ks_2samp, wasserstein_distance

    x, y = _finite(a), _finite(b)
    if x.size == 0 or y.size == 0:
        return DistributionDistance(x.size, y.size, _NAN, _NAN, _NAN)
    ks = ks_2samp(x, y)
    return DistributionDistance(x.size, y.size, float(ks.statistic), float(ks.pvalue),
                                float(wasserstein_distance(x, y)))


@dataclass(frozen=True)
class GroupDifference:
    """Group b minus group a."""

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    difference: float
    hedges_g: float
    p_value: float        # Mann-Whitney U, two-sided
    p_value_welch: float  # Welch's t-test, two-sided

    def as_dict(self) -> dict:
        return asdict(self)


def hedges_g(a, b) -> float:
    """Bias-corrected standardised mean difference (b - a) / pooled SD."""
    x, y = _finite(a), _finite(b)
    n1, n2 = x.size, y.size
    if n1 < 2 or n2 < 2:
        return _NAN
    pooled = np.sqrt(((n1 - 1) * x.var(ddof=1) + (n2 - 1) * y.var(ddof=1)) / (n1 + n2 - 2))
    if pooled == 0:
        return _NAN
    correction = 1 - 3 / (4 * (n1 + n2) - 9)
    return float((y.mean() - x.mean()) / pooled * correction)


def group_difference(a, b) -> GroupDifference:
    """Effect size and p-values of the difference between two independent groups."""
    from scipy.stats import mannwhitneyu, ttest_ind

    x, y = _finite(a), _finite(b)
    mean_a = float(x.mean()) if x.size else _NAN
    mean_b = float(y.mean()) if y.size else _NAN
    p_mw = p_t = _NAN
    if x.size and y.size:
        p_mw = float(mannwhitneyu(x, y, alternative="two-sided").pvalue)
    if x.size >= 2 and y.size >= 2 and (x.var() > 0 or y.var() > 0):
        p_t = float(ttest_ind(x, y, equal_var=False).pvalue)
    return GroupDifference(x.size, y.size, mean_a, mean_b, mean_b - mean_a, hedges_g(x, y), p_mw, p_t)

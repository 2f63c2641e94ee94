"""Statistics and coverage arithmetic: known values, scipy as the reference where it has one."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.metrics import (bootstrap_ci, bytes_per_object, distribution_distance, group_difference,
                                    hedges_g, paired_test, pct_area_per_pixel, pct_diameter_per_pixel, throughput)


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    v = np.array([0.61, 0.72, 0.65, 0.80, 0.70, 0.68, np.nan])
    low, high = bootstrap_ci(v, seed=3)
    assert (low, high) == bootstrap_ci(v, seed=3)
    assert low < np.nanmean(v) < high and 0.61 <= low and high <= 0.80
    assert all(np.isnan(bootstrap_ci([0.5]))) and bootstrap_ci([0.4, 0.4]) == (0.4, 0.4)
    assert all(np.isnan(bootstrap_ci([])))


def test_bootstrap_ci_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = 0
    for k in range(300):
        low, high = bootstrap_ci(rng.normal(0.7, 0.05, 40), n_resamples=400, seed=k)
        hits += low <= 0.7 <= high
    assert 0.88 <= hits / 300 <= 0.99
    narrow = bootstrap_ci(rng.normal(0.7, 0.05, 400), n_resamples=400)
    wide = bootstrap_ci(rng.normal(0.7, 0.05, 10), n_resamples=400)
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 3


def test_paired_test_wilcoxon_from_ten_pairs():
    rng = np.random.default_rng(1)
    a = rng.normal(0.8, 0.05, 12)
    b = a - 0.03 + rng.normal(0, 0.01, 12)
    t = paired_test(a, b)
    assert t.method == "wilcoxon" and t.n == 12
    assert t.p_value == pytest.approx(sps.wilcoxon(a - b).pvalue)
    assert t.mean_difference == pytest.approx(np.mean(a - b))


def test_paired_test_falls_back_to_an_exact_permutation_test():
    t = paired_test([0.9, 0.8, 0.85, 0.7, 0.95], [0.8, 0.7, 0.8, 0.6, 0.9])
    assert t.method.startswith("sign-flip") and t.p_value == pytest.approx(2 / 32)
    t = paired_test([0.9, 0.8, 0.85], [0.91, 0.7, 0.86])   # mixed signs: not significant
    assert t.p_value > 0.2
    assert np.isnan(paired_test([0.9], [0.8]).p_value)
    assert paired_test([0.5, 0.6], [0.5, 0.6]).p_value == 1.0
    assert paired_test([0.5, np.nan, 0.7], [0.4, 0.3, 0.6]).n == 2
    with pytest.raises(ValueError):
        paired_test([1, 2], [1, 2, 3])


def test_distribution_distance():
    x = np.arange(100.0)
    d = distribution_distance(x, x + 2.5)
    assert d.wasserstein == pytest.approx(2.5)
    assert d.ks_statistic == pytest.approx(sps.ks_2samp(x, x + 2.5).statistic)
    same = distribution_distance(x, x)
    assert same.ks_statistic == 0 and same.wasserstein == 0 and same.ks_pvalue == 1
    assert distribution_distance(x, [100.0, 200.0]).ks_statistic == 1.0
    assert np.isnan(distribution_distance(x, []).wasserstein)


def test_group_difference():
    a, b = np.array([10.0, 11, 12, 13, 14]), np.array([14.0, 15, 16, 17, 18])
    g = group_difference(a, b)
    pooled = np.sqrt((4 * a.var(ddof=1) + 4 * b.var(ddof=1)) / 8)
    assert g.difference == 4.0 and g.mean_a == 12.0 and g.mean_b == 16.0
    assert g.hedges_g == pytest.approx(4.0 / pooled * (1 - 3 / (4 * 10 - 9)))
    assert g.p_value == pytest.approx(sps.mannwhitneyu(a, b).pvalue)
    assert g.p_value_welch == pytest.approx(sps.ttest_ind(a, b, equal_var=False).pvalue)
    assert np.isnan(hedges_g([1.0], [2.0, 3.0]))


def test_coverage_and_throughput():
    assert pct_diameter_per_pixel(20.0) == 5.0
    assert pct_area_per_pixel(400.0) == 0.25
    np.testing.assert_array_equal(pct_diameter_per_pixel(np.array([10.0, 0.0])), [10.0, np.nan])
    assert throughput(1_000_000, 100.0, tau=2.0) == 5000.0
    # Downsampling by 2 divides object areas by 4: four times the objects per unit time.
    assert throughput(1_000_000, 25.0) == 4 * throughput(1_000_000, 100.0)
    assert bytes_per_object(512 * 512, 64, bytes_per_pixel=2) == 8192.0
    assert np.isnan(bytes_per_object(100, 0))
    with pytest.raises(InputError):
        throughput(1, 1, tau=0)
    with pytest.raises(InputError):
        bytes_per_object(1, 1, bytes_per_pixel=-1)


def test_paired_difference_decides_with_five_images():
    """5 images: the sign-flip test can never reach p < 0.0625; the margin with a CI can decide."""
    from rescale4dl_bmz.metrics import paired_difference

    best = np.array([0.53, 0.52, 0.54, 0.53, 0.52])
    lower_everywhere = best - np.array([0.031, 0.029, 0.033, 0.030, 0.035])  # lower on 5 of 5 by > margin
    r = paired_difference(lower_everywhere, best, margin=0.02)
    assert r.decision == "worse" and r.n_below_margin == 5 and r.ci_high < -0.02
    assert r.mean_difference == pytest.approx(-0.0316)
    close = best + np.array([-0.004, 0.003, -0.002, 0.001, -0.003])
    assert paired_difference(close, best, margin=0.02).decision == "equivalent"
    noisy = best + np.array([-0.10, 0.08, -0.05, 0.06, -0.04])
    assert paired_difference(noisy, best, margin=0.02).decision == "undecided"
    assert paired_difference([0.5], [0.6], margin=0.02).decision == "too few pairs"
    # Property: never "equivalent" when every pair is lower by more than the margin.
    rng = np.random.default_rng(3)
    for _ in range(200):
        b = rng.uniform(0.3, 0.9, 5)
        a = b - 0.02 - rng.uniform(1e-6, 0.2, 5)
        assert paired_difference(a, b, margin=0.02).decision != "equivalent"

"""results/statistics.py against known answers: scipy, hand computations, Krippendorff's published
example and the `krippendorff` package. Each test names the wrong formula it rules out."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from xaibench.results.statistics import (
    cohens_dz,
    holm,
    kendall_tau,
    krippendorff_alpha,
    paired_ci,
    rank_rows,
    spearman_brown,
    split_half,
    wilcoxon_pvalues,
)


@pytest.mark.parametrize("n", [5, 10, 30, 50, 64])
@pytest.mark.parametrize("kind", ["continuous", "ties", "zeros"])
def test_wilcoxon_rows_equal_scipy_row_by_row(n, kind):
    rng = np.random.default_rng(n)
    d = rng.normal(0.4, 1.0, size=(6, n))
    if kind == "ties":
        d = np.round(d * 2) / 2 + 0.25  # ties, no zeros
    if kind == "zeros":
        d[:, :2] = 0.0
    d[0] = rng.normal(0.0, 1.0, size=n)  # one row without ties in every batch: several kinds at once
    expected = [stats.wilcoxon(row).pvalue for row in d]
    np.testing.assert_allclose(wilcoxon_pvalues(d), expected, rtol=1e-12)


def test_wilcoxon_at_scipy_sample_size_boundaries():
    rng = np.random.default_rng(7)
    tied = np.round(rng.normal(0.5, 1, size=(2, 13)) * 2) / 2 + 0.25  # n = 13: sign flips, n = 14: normal
    tied[1, 0] = 0.0
    for d in (tied, np.concatenate([tied, tied[:, :1]], axis=1)):
        np.testing.assert_allclose(wilcoxon_pvalues(d), [stats.wilcoxon(r).pvalue for r in d], rtol=1e-12)


def test_wilcoxon_hand_computed_exact_values():
    # all 5 differences positive: W+ = 15, the largest of 2^5 equally likely sums → p = 2/32
    assert wilcoxon_pvalues(np.array([[1.0, 2, 3, 4, 5]]))[0] == pytest.approx(2 / 32)
    # rank 2 negative: W− = 2; sums ≤ 2 of subsets of {1..5}: ∅, {1}, {2} → p = 2·3/32
    assert wilcoxon_pvalues(np.array([[1.0, -2, 3, 4, 5]]))[0] == pytest.approx(6 / 32)
    assert wilcoxon_pvalues(np.zeros((1, 7)))[0] == 1.0  # identical values: no evidence of a difference
    # a zero and a tie (the sign-flip path): [0.5, 0.5, 1, −2, 3, 4] → ranks 1.5, 1.5, 3, 4, 5, 6, W− = 4;
    # sums ≤ 4 of 2^6 flips: ∅, {1.5}, {1.5'}, {1.5, 1.5'}, {3}, {4} → p = 2·6/64 (untied table: 14/64)
    assert wilcoxon_pvalues(np.array([[0.5, 0.5, 1, -2, 3, 4]]))[0] == pytest.approx(12 / 64)
    # the zero is dropped: [1, −1, 2, 3] → ranks 1.5, 1.5, 3, 4, W− = 1.5; sums ≤ 1.5: ∅, {1.5}, {1.5'} → 6/16
    assert wilcoxon_pvalues(np.array([[0.0, 1, -1, 2, 3]]))[0] == pytest.approx(6 / 16)


def test_wilcoxon_is_paired_not_unpaired():
    """A small shift that every image shows, inside a large between-image spread: paired tests see it."""
    base = np.random.default_rng(0).normal(0, 1, size=40)
    a, b = base + 0.05 + np.random.default_rng(1).normal(0, 0.01, size=40), base
    assert wilcoxon_pvalues((a - b)[None])[0] < 1e-6
    assert stats.mannwhitneyu(a, b).pvalue > 0.5  # the unpaired test would call them equal


def test_holm_hand_computed():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → running max 0.06
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, np.nan, 0.01]), [0.5, np.nan, 0.02])  # m = 2 tests
    np.testing.assert_allclose(holm([0.9, 0.01]), [0.9, 0.02])  # 0.9·1 stays; 0.01·2
    assert holm([0.6, 0.6]).tolist() == [1.0, 1.0]  # capped at 1


def test_paired_ci_resamples_differences():
    base = np.random.default_rng(3).normal(0, 1, size=30)
    assert paired_ci((base + 0.1) - base, seed=0) == pytest.approx((0.1, 0.1))  # unpaired: width ≈ 1
    d = np.random.default_rng(4).normal(0, 1, size=20)
    rng = np.random.default_rng(0)
    means = d[rng.integers(0, d.size, size=(1000, d.size))].mean(1)
    assert paired_ci(d, seed=0) == pytest.approx((np.quantile(means, 0.025), np.quantile(means, 0.975)))


def test_cohens_dz_hand_computed():
    assert cohens_dz(np.array([1.0, 2.0, 3.0])) == pytest.approx(2.0)  # mean 2 / sd 1 (ddof 1)
    assert cohens_dz(np.array([0.5, 0.5])) == math.inf and cohens_dz(np.zeros(3)) == 0.0
    assert math.isnan(cohens_dz(np.array([1.0])))


def test_kendall_tau_b_hand_computed():
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)  # 5 concordant, 1 discordant
    # a tie in b: 5 concordant, 0 discordant, 1 pair tied in b → τ_b = 5/√(6·5) (τ_a would be 5/6)
    assert kendall_tau([1, 2, 3, 4], [1, 1, 2, 3]) == pytest.approx(5 / math.sqrt(30))
    assert math.isnan(kendall_tau([1, 2], [2, 1])) and math.isnan(kendall_tau([1, 2, 3], [1, 1, 1]))


def test_split_half_is_spearman_brown_corrected_then_averaged():
    # images 0,1 rank the three items 1 < 2 < 3; images 2,3 rank them 1 < 3 > 2
    v = np.array([[1.0, 2, 3], [1, 2, 3], [1, 3, 2], [1, 3, 2]])
    # halves {0,1} | {2,3}: means (1,2,3) vs (1,3,2), ρ = 1 − 6·2/(3·8) = 0.5 → 2·0.5/1.5
    assert split_half(v, splits=[np.array([0, 1])]) == pytest.approx(2 / 3)
    # halves {0,2} | {1,3}: equal means, ρ = 1 → 1; the average of the corrected values is 5/6
    # (correcting the mean ρ 0.75 would give 6/7)
    assert split_half(v, splits=[np.array([0, 1]), np.array([0, 2])]) == pytest.approx(5 / 6)
    assert spearman_brown(0.5) == pytest.approx(2 / 3)


def test_split_half_of_consistent_and_of_random_rankings():
    rng = np.random.default_rng(0)
    consistent = np.arange(5)[None, :] + rng.normal(0, 0.1, size=(40, 5))
    assert split_half(consistent, n_splits=50, seed=0) == pytest.approx(1.0)
    noise = rng.normal(0, 1, size=(200, 40))
    assert split_half(noise, n_splits=200, seed=0) < 0.25  # no signal: ≤ 0 (negative ρ are amplified, then capped at −1)


def test_krippendorff_alpha_published_example():
    """Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the 4 coders × 12 units example."""
    nan = np.nan
    data = np.array([[1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
                     [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
                     [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
                     [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan]])
    assert krippendorff_alpha(data, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(data, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert krippendorff_alpha(data, "interval") == pytest.approx(0.849, abs=5e-4)


def test_krippendorff_alpha_equals_the_krippendorff_package_on_ranks_with_gaps():
    krippendorff = pytest.importorskip("krippendorff")
    rng = np.random.default_rng(0)
    values = np.arange(8)[None, :] * 0.3 + rng.normal(size=(30, 8))
    values[rng.random(values.shape) < 0.2] = np.nan
    ranks = rank_rows(values, higher_is_better=True)  # images as raters of the 8 items
    for level in ("ordinal", "interval", "nominal"):
        assert krippendorff_alpha(ranks, level) == pytest.approx(
            krippendorff.alpha(reliability_data=ranks, level_of_measurement=level), rel=1e-10)


def test_rank_rows_direction_and_ties():
    v = np.array([[0.1, 0.3, 0.3], [0.2, np.nan, 0.1]])
    np.testing.assert_allclose(rank_rows(v, True), [[3, 1.5, 1.5], [1, np.nan, 2]])
    np.testing.assert_allclose(rank_rows(v, False), [[1, 2.5, 2.5], [2, np.nan, 1]])

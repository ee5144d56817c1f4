"""The statistics behind the leaderboard and the metric meta-evaluation, as plain array functions:
paired tests and effect sizes, Holm's correction, rank agreement and reliability coefficients.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

from .summary import bootstrap_ci


def wilcoxon_pvalues(diffs: np.ndarray) -> np.ndarray:
    """Two-sided p-values of the Wilcoxon signed-rank test (Wilcoxon, "Individual Comparisons by
    Ranking Methods", Biometrics Bulletin 1945) of each row of paired differences (P, n), finite.

    Per row exactly what `scipy.stats.wilcoxon(row)` returns (zeros dropped; the exact null
    distribution when n ≤ 50 without ties or zeros, the exact sign-flip distribution when n ≤ 13
    otherwise, else the normal approximation with tie correction), with one vectorized scipy call
    per kind of row. The sign flips are enumerated here: scipy's own path for them (a
    `permutation_test` per row) took 0.33 s per 8-image row, ~330× this, and a run has thousands
    of such pairs. A row of zeros only (identical values) gets p = 1.
    """
    d = np.atleast_2d(np.asarray(diffs, dtype=np.float64))
    p = np.ones(d.shape[0])
    n = d.shape[1]
    if n == 0 or d.shape[0] == 0:
        return p
    a = np.abs(d)
    nonzero = a > 0
    ordered = np.sort(np.where(nonzero, a, np.nan), axis=1)
    ties = (np.diff(ordered, axis=1) == 0).any(1)
    exactable = ~(ties | (~nonzero).any(1)) & (n <= 50)
    live = nonzero.any(1)
    kinds = {"exact": exactable, "permutation": live & ~exactable & (n <= 13),
             "asymptotic": live & ~exactable & (n > 13)}
    for kind, rows in kinds.items():
        if rows.any() and kind == "permutation":
            p[rows] = [sign_flip_p(row) for row in d[rows]]
        elif rows.any():
            p[rows] = stats.wilcoxon(d[rows], axis=1, method=kind).pvalue
    return p


def sign_flip_p(d: np.ndarray) -> float:
    """Two-sided p of W+ over all 2^m sign flips of the m non-zero differences (ranks of |d| with
    ties averaged): scipy's exact permutation test for small samples, enumerated in one product."""
    nz = d[d != 0]
    ranks = stats.rankdata(np.abs(nz))
    observed = ranks[nz > 0].sum()
    signs = (np.arange(2**nz.size)[:, None] >> np.arange(nz.size)) & 1
    null = signs @ ranks
    gamma = abs(observed) * 100 * np.finfo(np.float64).eps  # scipy's tolerance for equal sums
    less, greater = (null <= observed + gamma).mean(), (null >= observed - gamma).mean()
    return float(min(1.0, 2 * min(less, greater)))


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm, "A Simple Sequentially Rejective Multiple Test
    Procedure", Scand. J. Statistics 1979): the i-th smallest of m gets max_{j ≤ i} min(1, (m−j+1)·p_(j)).
    NaN entries (no test) stay NaN and do not count in m."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def paired_ci(diffs: np.ndarray, seed: int = 0, resamples: int = 1000, level: float = 0.95) -> tuple[float, float]:
    """Paired bootstrap CI of a mean difference (Efron & Tibshirani, "An Introduction to the
    Bootstrap", 1993, ch. 13): images are resampled with both of their values, i.e. the per-image
    differences are resampled; percentile interval, seeded as `summary.bootstrap_ci`."""
    return bootstrap_ci(diffs, seed=seed, resamples=resamples, level=level)


def cohens_dz(diffs: np.ndarray) -> float:
    """Cohen's d for paired samples, d_z = mean(d) / sd(d) with ddof = 1 (Cohen, "Statistical
    Power Analysis for the Behavioral Sciences", 1988, §2.3.5); ±inf for a constant non-zero
    difference, 0 for no difference, NaN below two values."""
    d = np.asarray(diffs, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size < 2:
        return float("nan")
    mean, sd = d.mean(), d.std(ddof=1)
    if sd == 0:
        return 0.0 if mean == 0 else float(np.sign(mean) * np.inf)
    return float(mean / sd)


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's τ_b between two score vectors over the same items (Kendall, "A New Measure of
    Rank Correlation", Biometrika 1938; τ_b's tie correction, Kendall 1945), via scipy; NaN when
    fewer than three items or a constant vector."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(stats.kendalltau(a, b).statistic)


def spearman_brown(r: np.ndarray | float, factor: float = 2.0) -> np.ndarray | float:
    """Spearman–Brown prophecy formula (Spearman 1910; Brown 1910): the reliability of a test
    `factor` times as long, factor·r / (1 + (factor−1)·r); split halves → the full length."""
    r = np.asarray(r, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = factor * r / (1 + (factor - 1) * r)
    return out[()] if out.ndim == 0 else out


def row_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's ρ between matching rows of a and b (S, k): Pearson of average ranks; NaN for a
    constant row."""
    ra, rb = stats.rankdata(a, axis=1), stats.rankdata(b, axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    den = np.sqrt((ra * ra).sum(1) * (rb * rb).sum(1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, (ra * rb).sum(1) / den, np.nan)


def split_half(values: np.ndarray, n_splits: int = 100, seed: int = 0,
               splits: Sequence[np.ndarray] | None = None) -> float:
    """Split-half reliability of a ranking of k items measured on n images (values (n, k)): the
    images are split at random into two halves (⌊n/2⌋ each), the items' means in each half are
    correlated (Spearman's ρ), each ρ is Spearman–Brown corrected to the full length, and the
    corrected values are averaged over `n_splits` seeded splits (or the given index arrays of the
    first halves, the rest being the second). Corrected values below −1 count as −1; NaN when
    every split has a constant half."""
    v = np.asarray(values, dtype=np.float64)
    n = v.shape[0]
    if splits is None:
        rng = np.random.default_rng(seed)
        perms = np.stack([rng.permutation(n) for _ in range(n_splits)]) if n_splits else np.empty((0, n), int)
        first, second = perms[:, : n // 2], perms[:, n // 2 : 2 * (n // 2)]
    else:
        first = np.stack([np.asarray(s) for s in splits])
        second = np.stack([np.setdiff1d(np.arange(n), s) for s in first])
    if n < 2 or v.shape[1] < 2 or not len(first):
        return float("nan")
    rho = row_spearman(v[first].mean(1), v[second].mean(1))
    corrected = np.maximum(spearman_brown(rho), -1.0)
    return float(np.nanmean(corrected)) if np.isfinite(corrected).any() else float("nan")


def rank_rows(values: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Per row (image), the items' ranks, 1 = best in the metric's direction, ties averaged; NaN stays NaN."""
    v = np.asarray(values, dtype=np.float64)
    signed = -v if higher_is_better else v
    return stats.rankdata(signed, axis=1, nan_policy="omit")


def krippendorff_alpha(data: np.ndarray, level: str = "ordinal") -> float:
    """Krippendorff's α (Krippendorff, "Content Analysis", 2004; "Computing Krippendorff's
    Alpha-Reliability", 2011) of reliability data (raters, units), NaN = missing value:
    α = 1 − (n−1) Σ o_ck δ²_ck / Σ n_c n_k δ²_ck over the coincidence matrix o of the pairable
    values (units with ≥ 2 values). δ²: `nominal` [c ≠ k], `interval` (c−k)², `ordinal`
    (Σ_{g=c..k} n_g − (n_c+n_k)/2)². NaN when there is no variation."""
    x = np.asarray(data, dtype=np.float64)
    x = x[:, np.isfinite(x).sum(0) >= 2]
    if x.size == 0:
        return float("nan")
    by_unit = x.T
    unit_of = np.nonzero(np.isfinite(by_unit))[0]
    values, inverse = np.unique(by_unit[np.isfinite(by_unit)], return_inverse=True)
    counts = np.zeros((x.shape[1], values.size))  # per unit: how often each value was given
    np.add.at(counts, (unit_of, inverse), 1.0)
    m_u = counts.sum(1)
    pairs = counts[:, :, None] * counts[:, None, :] - np.einsum("uc,ck->uck", counts, np.eye(values.size))
    o = (pairs / (m_u - 1)[:, None, None]).sum(0)
    n_c = o.sum(1)
    n = n_c.sum()
    c, k = np.meshgrid(values, values, indexing="ij")
    if level == "nominal":
        delta = (c != k).astype(np.float64)
    elif level == "interval":
        delta = (c - k) ** 2
    elif level == "ordinal":
        cum = np.concatenate([[0.0], np.cumsum(n_c)])
        i, j = np.meshgrid(np.arange(values.size), np.arange(values.size), indexing="ij")
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        delta = (cum[hi + 1] - cum[lo] - (n_c[i] + n_c[j]) / 2) ** 2
    else:
        raise ValueError(f"unknown level '{level}' (nominal, ordinal, interval)")
    expected = (np.outer(n_c, n_c) * delta).sum()
    if expected == 0:
        return float("nan")
    return float(1 - (n - 1) * (o * delta).sum() / expected)

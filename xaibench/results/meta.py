"""Which metric to believe: agreement between the metrics' explainer rankings, each metric's
reliability over images, and its discrimination of real explainers from the controls.

Plain DataFrames from the per-image scores and the paired leaderboard of results/stats.py
(docs/metrics.md "Metric meta-evaluation"); the controls take no part in agreement and reliability.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
import pandas as pd

from .statistics import kendall_tau, krippendorff_alpha, rank_rows, split_half
from .stats import image_table

RELIABILITY_COLUMNS = ["metric", "n_images", "n_explainers", "split_half", "alpha", "discrimination", "control_pairs"]
MIN_EXPLAINERS, MIN_IMAGES = 3, 4


def agreement(board: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Metrics × metrics Kendall τ_b (Kendall 1938) between the real explainers' rankings, each
    metric's ranking being the leaderboard's (paired difference from the leader, positive =
    better), over the explainers both metrics rank; NaN below three shared explainers."""
    real = board[~board["control"].astype(bool)]
    wide = real.pivot_table(index="explainer", columns="metric", values="vs_leader", dropna=False)
    names = [m for m in (metrics if metrics is not None else pd.unique(real["metric"])) if m in wide.columns]
    v = wide[names].to_numpy(dtype=np.float64)
    ranked = np.isfinite(v)
    tau = np.full((len(names), len(names)), np.nan)
    for i in range(len(names)):
        for j in range(i, len(names)):
            both = ranked[:, i] & ranked[:, j]
            tau[i, j] = tau[j, i] = kendall_tau(v[both, i], v[both, j])
    return pd.DataFrame(tau, index=pd.Index(names, name="metric"), columns=names)


def complete_block(table: pd.DataFrame, min_explainers: int = MIN_EXPLAINERS, min_images: int = MIN_IMAGES) -> pd.DataFrame:
    """The largest gap-free part (images × explainers) of a metric's table: for each explainer
    image count t, the explainers with at least t images and the images all of them have; the
    block with the most values wins (ties: more explainers). Empty when none is big enough."""
    counts = table.notna().sum(0)
    best, best_size = table.iloc[:0, :0], -1
    for t in sorted({int(c) for c in counts if c > 0}, reverse=True):
        cols = list(counts.index[counts >= t])
        rows = table[cols].notna().all(1)
        size = int(rows.sum()) * len(cols)
        if len(cols) >= min_explainers and rows.sum() >= min_images and size > best_size:
            best, best_size = table.loc[rows, cols], size
    return best


def reliability(scores: pd.DataFrame, directions: Mapping[str, bool], controls: Collection[str] = (),
                board: pd.DataFrame | None = None, n_splits: int = 100, seed: int = 0) -> pd.DataFrame:
    """Per metric, on the largest gap-free block of real explainers × images (`complete_block`):
    `split_half`, the split-half reliability of the explainer ranking (random halves of the
    images, Spearman–Brown corrected, averaged over `n_splits` seeded splits), and `alpha`,
    Krippendorff's ordinal α with the images as raters of the explainers' per-image ranks (the
    inter-rater reliability of Tomsett, Harborne, Chakraborty, Gurram, Preece, "Sanity Checks for
    Saliency Metrics", AAAI 2020). `discrimination` (from `board`): the fraction of (real
    explainer, control) pairs in which the real explainer is significantly better (Holm-adjusted
    Wilcoxon, as on the leaderboard); `control_pairs` is their number."""
    rows = []
    for metric in pd.unique(scores["metric"]):
        table = image_table(scores, metric)
        table = table[[c for c in table.columns if c not in set(controls)]]
        block = complete_block(table)
        values = block.to_numpy(dtype=np.float64)
        hib = bool(directions[metric])
        row = dict(metric=metric, n_images=block.shape[0], n_explainers=block.shape[1],
                   split_half=split_half(values, n_splits, seed) if block.size else np.nan,
                   alpha=krippendorff_alpha(rank_rows(values, hib), "ordinal") if block.size else np.nan,
                   discrimination=np.nan, control_pairs=0)
        if board is not None:
            b = board[board["metric"] == metric]
            real = b[~b["control"].astype(bool)]
            pairs = len(real) * int(b["control"].astype(bool).sum())
            if pairs:
                row.update(discrimination=float(real["controls_beaten"].sum()) / pairs, control_pairs=pairs)
        rows.append(row)
    return pd.DataFrame(rows, columns=RELIABILITY_COLUMNS)

"""Which explainer is really better: per metric, paired tests of every pair of explainers on the
images they share, rank groups, effect sizes, margins over the controls, and a per-class table.

Every function takes per-image scores (columns explainer, metric, image, target, value; `image`
identifies an image across explainers) and returns a plain DataFrame (docs/metrics.md
"Leaderboard statistics"), so the CLI, the run folder's tables and a report all show the same numbers.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from .statistics import cohens_dz, holm, paired_ci, wilcoxon_pvalues

ALPHA = 0.05
BOARD_COLUMNS = ["metric", "explainer", "n", "mean", "partial", "control", "rank", "group", "vs_leader",
                 "vs_leader_low", "vs_leader_high", "cohens_d", "p_leader", "n_leader", "margin", "margin_low",
                 "margin_high", "beats_controls", "controls_beaten"]
PAIR_COLUMNS = ["metric", "a", "b", "n", "diff", "direction", "p", "p_holm"]


def image_table(scores: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Images × explainers of one metric (NaN where an explainer has no value for an image)."""
    sub = scores[scores["metric"] == metric].drop_duplicates(["image", "explainer"])  # a repeated pair: its first value
    images, rows = np.unique(sub["image"].to_numpy(), return_inverse=True)
    names = pd.Index(sorted(pd.unique(sub["explainer"])), name="explainer")
    table = np.full((len(images), len(names)), np.nan)
    table[rows, names.get_indexer(sub["explainer"])] = sub["value"].to_numpy(dtype=np.float64)
    return pd.DataFrame(table, index=pd.Index(images, name="image"), columns=names)


def pairwise(table: pd.DataFrame, higher_is_better: bool) -> pd.DataFrame:
    """Every pair (a, b) of explainers on the images both have: n, the mean paired difference
    `diff` = mean(a − b) signed so that positive means a is better in the metric's direction, the
    side the signed ranks lean to (`direction`, `rank_direction`), the Wilcoxon signed-rank p
    (Wilcoxon 1945) and its Holm-adjusted value over all the metric's pairs (Holm 1979). A pair
    without shared images has n = 0 and no p."""
    v = table.to_numpy(dtype=np.float64) * (1.0 if higher_is_better else -1.0)
    names = list(table.columns)
    finite = np.isfinite(v)
    rows, by_images = [], {}
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            shared = finite[:, i] & finite[:, j]
            rows.append([names[i], names[j], int(shared.sum())])
            if shared.any():
                by_images.setdefault(shared.tobytes(), []).append((len(rows) - 1, i, j))
    out = pd.DataFrame(rows, columns=["a", "b", "n"])
    diff, p, direction = (np.full(len(rows), np.nan) for _ in range(3))
    for members in by_images.values():
        k = [m[0] for m in members]
        shared = finite[:, members[0][1]] & finite[:, members[0][2]]
        d = np.stack([v[shared, i] - v[shared, j] for _, i, j in members])
        diff[k], p[k], direction[k] = d.mean(1), wilcoxon_pvalues(d), rank_direction(d)
    out["diff"], out["direction"], out["p"], out["p_holm"] = diff, direction, p, holm(p)
    return out


def rank_direction(d: np.ndarray) -> np.ndarray:
    """Per row of differences, the side the signed-rank test leans to: sign(W+ − W−), zeros dropped
    (+1: a is better). A significant test means better or worse on this side, whatever the mean."""
    ranks = rankdata(np.where(d != 0, np.abs(d), np.nan), axis=1, nan_policy="omit")
    return np.sign(np.nansum(np.where(d > 0, ranks, 0.0), 1) - np.nansum(np.where(d < 0, ranks, 0.0), 1))


def metric_board(table: pd.DataFrame, higher_is_better: bool, controls: Collection[str] = (), alpha: float = ALPHA,
                 seed: int = 0, pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One metric's leaderboard: per explainer n and mean of its own images, `partial` when it has
    fewer images than the most-measured explainers, its paired difference from the leader (the best
    of the most-measured explainers) with a paired-bootstrap 95 % CI (Efron & Tibshirani 1993),
    Cohen's d_z (Cohen 1988) and the Holm-adjusted Wilcoxon p, all on the images the two share and
    signed so that positive is better; `group` is the rank group (`rank_groups`) and `rank` orders
    by group, then by that difference. Against the controls: the margin over the best control
    (same statistics) and whether the explainer is significantly better than every control."""
    names = list(table.columns)
    sign = 1.0 if higher_is_better else -1.0
    v = table.to_numpy(dtype=np.float64)
    n = np.isfinite(v).sum(0)
    means = np.array([np.nanmean(v[:, i]) if n[i] else np.nan for i in range(len(names))])
    full = n == n.max()
    control = np.array([name in set(controls) for name in names])
    pairs = pairwise(table, higher_is_better) if pairs is None else pairs
    side, p_adj = _square(pairs, names, "direction"), _square(pairs, names, "p_holm")
    better = np.where(full, sign * means, -np.inf)
    leader = int(np.argmax(better))
    def versus(i: int, ref: int) -> list[float]:
        shared = np.isfinite(v[:, i]) & np.isfinite(v[:, ref])
        d = sign * (v[shared, i] - v[shared, ref])
        if i == ref:
            return [0.0, 0.0, 0.0, 0.0, np.nan, int(shared.sum())]
        lo, hi = paired_ci(d, seed=seed)
        return [float(d.mean()) if d.size else np.nan, lo, hi, cohens_dz(d), p_adj[i, ref], int(shared.sum())]

    k = len(names)
    board = pd.DataFrame({"metric": "", "explainer": names, "n": n, "mean": means, "partial": ~full, "control": control})
    board[["vs_leader", "vs_leader_low", "vs_leader_high", "cohens_d", "p_leader", "n_leader"]] = np.array(
        [versus(i, leader) for i in range(k)], dtype=np.float64).reshape(k, 6)
    board["n_leader"] = board["n_leader"].astype(int)
    vs = board["vs_leader"].to_numpy()
    order = sorted(range(k), key=lambda i: (-np.nan_to_num(vs[i], nan=-np.inf), i != leader, names[i]))
    group = rank_groups(order, full, p_adj, side, alpha)
    order = sorted(order, key=lambda i: group[i])  # stable: by group, then the paired difference
    rank = np.empty(k, dtype=int)
    rank[order] = np.arange(1, k + 1)
    board["rank"], board["group"] = rank, group
    margin = np.full((k, 3), np.nan)
    beats, beaten = [None] * k, np.full(k, np.nan)  # empty for the controls and without controls
    ctrl = np.flatnonzero(control)
    if ctrl.size:
        best = ctrl[np.argmax(np.where(full[ctrl], sign * means[ctrl], -np.inf))]
        for i in np.flatnonzero(~control):
            margin[i] = versus(i, best)[:3]
            beaten[i] = sum(bool(p_adj[i, c] < alpha and side[i, c] > 0) for c in ctrl)
            beats[i] = bool(beaten[i] == ctrl.size)
    board[["margin", "margin_low", "margin_high"]] = margin
    board["beats_controls"], board["controls_beaten"] = pd.Series(beats, dtype=object), beaten
    return board.sort_values("rank", kind="stable").reset_index(drop=True)


def _square(pairs: pd.DataFrame, names: list[str], column: str) -> np.ndarray:
    """A pairwise column as a (k, k) matrix: [a, b] = value, [b, a] = value (p) or −value (diff, direction)."""
    pos = {name: i for i, name in enumerate(names)}
    out = np.full((len(names), len(names)), np.nan)
    for a, b, value in zip(pairs["a"], pairs["b"], pairs[column]):
        out[pos[a], pos[b]] = value
        out[pos[b], pos[a]] = -value if column in ("diff", "direction") else value
    return out


def rank_groups(order: list[int], full: np.ndarray, p_adjusted: np.ndarray, side: np.ndarray,
                alpha: float = ALPHA) -> np.ndarray:
    """Rank groups from a ranking (indices, best first), which explainers are fully measured, the
    adjusted pairwise p-values and the side each test leans to ([i, j] > 0: i better). Among the
    fully measured explainers, the first one not yet grouped opens group g and takes every
    ungrouped one not significantly worse than it (adjusted p ≥ alpha, no shared images, or a
    difference in its favour); repeat with g + 1. An explainer with fewer images joins the first
    group whose opener it is not significantly worse than, else a last group of its own."""
    group = np.zeros(p_adjusted.shape[0], dtype=int)

    def worse(j: int, i: int) -> bool:
        return bool(p_adjusted[j, i] < alpha and side[j, i] < 0)

    openers: list[int] = []
    measured = [i for i in order if full[i]]
    for i in measured:
        if group[i]:
            continue
        openers.append(i)
        group[i] = len(openers)
        for j in measured:
            if not group[j] and not worse(j, i):
                group[j] = len(openers)
    for j in (i for i in order if not full[i]):
        group[j] = next((g + 1 for g, i in enumerate(openers) if not worse(j, i)), len(openers) + 1)
    return group


def paired_board(scores: pd.DataFrame, directions: Mapping[str, bool], controls: Collection[str] = (),
                 alpha: float = ALPHA, seed: int = 0, pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """`metric_board` for every metric of `scores` (columns BOARD_COLUMNS), metrics in order of appearance;
    `pairs`: the `all_pairs` table of the same scores, when it is at hand (else computed per metric)."""
    frames = []
    for metric in pd.unique(scores["metric"]):
        own = None if pairs is None else pairs[pairs["metric"] == metric]
        board = metric_board(image_table(scores, metric), bool(directions[metric]), controls, alpha, seed, own)
        board["metric"] = metric
        frames.append(board)
    return pd.concat(frames, ignore_index=True)[BOARD_COLUMNS] if frames else pd.DataFrame(columns=BOARD_COLUMNS)


def all_pairs(scores: pd.DataFrame, directions: Mapping[str, bool]) -> pd.DataFrame:
    """`pairwise` for every metric (columns PAIR_COLUMNS)."""
    frames = []
    for metric in pd.unique(scores["metric"]):
        pairs = pairwise(image_table(scores, metric), bool(directions[metric]))
        pairs.insert(0, "metric", metric)
        frames.append(pairs)
    return pd.concat(frames, ignore_index=True)[PAIR_COLUMNS] if frames else pd.DataFrame(columns=PAIR_COLUMNS)


def by_class(scores: pd.DataFrame, directions: Mapping[str, bool]) -> pd.DataFrame:
    """Per metric, class (the image's target) and explainer: mean, n and the rank of the mean among
    the explainers in that class (1 = best, ties share the best rank), with `partial` as on the
    leaderboard; explainers that win on average can lose on whole classes."""
    if scores.empty:
        return pd.DataFrame(columns=["metric", "class", "explainer", "mean", "n", "rank", "partial"])
    grouped = scores.groupby(["metric", "target", "explainer"], sort=True)["value"]
    out = pd.DataFrame({"mean": grouped.mean(), "n": grouped.count()}).reset_index()
    out = out.rename(columns={"target": "class"})
    signed = out["mean"] * out["metric"].map(lambda m: 1.0 if directions[m] else -1.0)
    out["rank"] = signed.groupby([out["metric"], out["class"]]).rank(ascending=False, method="min").astype(int)
    totals = scores.groupby(["metric", "explainer"])["value"].count()
    most = totals.groupby(level="metric").transform("max")
    partial = (totals < most).rename("partial").reset_index()
    return out.merge(partial, on=["metric", "explainer"], how="left")

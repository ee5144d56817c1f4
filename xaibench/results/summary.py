"""From batch arrays to tables: the tidy per-image `scores.csv` rows, derived scores declared by the
metrics (e.g. `overall`), and `summary.csv` (mean, std, n, skipped, bootstrap CI, direction, protocol).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from . import keys

SCORE_COLUMNS = ["index", "id", "label", "target", "pred", "explainer", "metric", "value"]
SUMMARY_COLUMNS = ["explainer", "metric", "mean", "std", "n", "n_skipped", "ci_low", "ci_high", "higher_is_better",
                   "protocol", "group"]
IMAGE_KEY = ["index", "id", "label", "target", "pred", "explainer"]


def bootstrap_ci(values: np.ndarray, seed: int = 0, resamples: int = 1000, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean (Efron 1979), seeded, vectorized."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size == 1:
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    step = max(1, int(2e7 // v.size))
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        means[start:stop] = v[rng.integers(0, v.size, size=(stop - start, v.size))].mean(1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def tidy(arrays: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per-image rows (index, id, label, target, pred, explainer, metric, value) of one batch: the
    images each score was computed for (status 1)."""
    parts = []
    base = {k: arrays[keys.sample(k)] for k in ("id", "label", "target", "pred")}
    base["index"] = arrays[keys.INDEX]
    for name, values in arrays.items():
        key = keys.parse(name)
        if key.kind != "scores":
            continue
        status = arrays.get(keys.status(key.explainer, key.base_metric))
        keep = status == 1 if status is not None else np.isfinite(values)
        if not keep.any():
            continue
        df = pd.DataFrame({k: v[keep] for k, v in base.items()})
        df["explainer"], df["metric"], df["value"] = key.explainer, key.metric, values[keep].astype(np.float64)
        parts.append(df)
    if not parts:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    return pd.concat(parts, ignore_index=True)[SCORE_COLUMNS]


def add_derived(scores: pd.DataFrame, derived: Sequence[Any]) -> pd.DataFrame:
    """Append each derived score (`name`, `inputs`, `combine`: declared by the metrics) for every
    image that has all its inputs."""
    for d in derived:
        if scores.empty or not set(d.inputs) <= set(scores["metric"]):
            continue
        wide = scores[scores.metric.isin(d.inputs)].pivot_table(index=IMAGE_KEY, columns="metric", values="value")
        wide = wide.dropna()
        values = d.combine(*(wide[m] for m in d.inputs)).rename("value").reset_index()
        values["metric"] = d.name
        scores = pd.concat([scores, values[SCORE_COLUMNS]], ignore_index=True)
    return scores


def summarize(
    scores: pd.DataFrame, metric_info: dict[str, dict[str, Any]], seed: int, skipped: dict[tuple[str, str], int] | None = None
) -> pd.DataFrame:
    """Per (explainer, metric): mean, std, n, n_skipped, 95 % bootstrap CI, direction, protocol,
    rank group (results/stats.py); then, for each metric whose info has a `class_mean`
    description, the mean of per-class means (no group: no per-image values)."""
    if scores.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    skipped = skipped or {}
    rows = []
    for (explainer, metric), grp in scores.groupby(["explainer", "metric"], sort=False):
        base = metric.split(":")[0]
        info = metric_info.get(metric) or metric_info.get(base, {"higher_is_better": True, "protocol": {}})
        v = grp["value"].to_numpy(dtype=np.float64)
        lo, hi = bootstrap_ci(v, seed=seed)
        rows.append(dict(
            explainer=explainer, metric=metric,
            mean=float(np.nanmean(v)) if np.isfinite(v).any() else float("nan"),
            std=float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 else 0.0,
            n=int(np.isfinite(v).sum()), n_skipped=int(skipped.get((explainer, base), 0)),
            ci_low=lo, ci_high=hi, higher_is_better=bool(info["higher_is_better"]),
            protocol=json.dumps(info.get("protocol", {}), sort_keys=True, default=str),
        ))
    for metric, info in metric_info.items():
        if not info.get("class_mean"):
            continue
        for explainer, grp in scores[scores.metric == metric].groupby("explainer", sort=False):
            per_class = grp.groupby("target")["value"].mean()
            rows.append(dict(explainer=explainer, metric=f"{metric}:class_mean", mean=float(per_class.mean()),
                             std=float(per_class.std(ddof=1)) if len(per_class) > 1 else 0.0, n=int(len(grp)),
                             n_skipped=int(skipped.get((explainer, metric), 0)),
                             ci_low=float("nan"), ci_high=float("nan"), higher_is_better=bool(info["higher_is_better"]),
                             protocol=json.dumps({"aggregation": info["class_mean"]}, sort_keys=True)))
    out = pd.DataFrame(rows)
    return out.merge(rank_groups(scores, out, seed), on=["explainer", "metric"], how="left")[SUMMARY_COLUMNS]


def rank_groups(scores: pd.DataFrame, summary: pd.DataFrame, seed: int) -> pd.DataFrame:
    """(explainer, metric, group): the rank groups of the paired leaderboard (results/stats.py)."""
    from .stats import paired_board  # stats → statistics → this module

    directions = summary.groupby("metric", sort=False)["higher_is_better"].first().to_dict()
    per_image = scores.rename(columns={"index": "image"})
    board = paired_board(per_image[per_image["metric"].isin(directions)], directions, seed=seed)
    return board[["explainer", "metric", "group"]].astype({"group": "Int64"})

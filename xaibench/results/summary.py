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
    base = {k: arrays[keys.sample(k)] for k in ("id", "label", "target", "pred")}
    base["index"] = arrays[keys.INDEX]
    kept, names, counts, values_kept = [], [], [], []  # one frame at the end: a frame per score is slow
    for name, values in arrays.items():
        key = keys.parse(name)
        if key.kind != "scores":
            continue
        status = arrays.get(keys.status(key.explainer, key.base_metric))
        keep = status == 1 if status is not None else np.isfinite(values)
        if not keep.any():
            continue
        kept.append(keep)
        names.append((key.explainer, key.metric))
        counts.append(int(keep.sum()))
        values_kept.append(values[keep].astype(np.float64))
    if not kept:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    columns = {k: np.concatenate([v[keep] for keep in kept]) for k, v in base.items()}
    for i, column in enumerate(("explainer", "metric")):
        columns[column] = np.repeat(np.array([n[i] for n in names], dtype=object), counts)
    columns["value"] = np.concatenate(values_kept)
    return pd.DataFrame(columns)[SCORE_COLUMNS]


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


def max_over_thresholds(curves: np.ndarray, params: dict[str, Any]) -> float:
    """MaxBoxAcc (Choe et al., CVPR 2020): curves = (N, T) hits per image and threshold τ → the
    max over τ of the share of images hit."""
    return float(np.nanmax(np.nanmean(curves, axis=0)))


def mean_over_iou_of_max_over_thresholds(curves: np.ndarray, params: dict[str, Any]) -> float:
    """MaxBoxAccV2 (Choe et al., CVPR 2020): curves = (N, T) best IoU per image and τ → the mean over
    δ in params["ious"] of the max over τ of the share of images with IoU ≥ δ."""
    return float(np.mean([np.nanmax(np.mean(curves >= d, axis=0)) for d in params["ious"]]))


def mean_over_classes_of_hit_rate(curves: np.ndarray, params: dict[str, Any]) -> float:
    """TorchRay's multi-class pointing-game accuracy (Zhang et al. 2018; `classes: annotated`):
    curves = (N, classes) hit per image and annotated class, NaN where absent → each class's hit
    rate over the images annotated with it, then the mean over the classes present."""
    with np.errstate(invalid="ignore"):
        counts = np.isfinite(curves).sum(0)
        per_class = np.nansum(curves, axis=0)[counts > 0] / counts[counts > 0]
    return float(per_class.mean())


# name → (formula, description): a metric's `dataset_aggregate()` names one (summary.csv's `<metric>:dataset`)
CURVE_AGGREGATES = {
    "max_over_thresholds": (max_over_thresholds, "max over thresholds of the share of images hit (MaxBoxAcc)"),
    "mean_over_iou_of_max_over_thresholds": (mean_over_iou_of_max_over_thresholds,
                                             "mean over IoU thresholds of the max over map thresholds of the "
                                             "share of images hit (MaxBoxAccV2)"),
    "mean_over_classes_of_hit_rate": (mean_over_classes_of_hit_rate,
                                      "mean over the classes present of each class's hit rate over the images "
                                      "annotated with it (TorchRay's pointing-game accuracy)"),
}


def dataset_rows(curves: dict[tuple[str, str], np.ndarray], metric_info: dict[str, dict[str, Any]]) -> list[dict]:
    """summary.csv's `<metric>:dataset` rows: the metric's curve aggregate over the images it scored
    (rows with a finite value: a MaxBoxAcc curve is all finite or all NaN, a multi-class pointing-game
    curve is NaN for the classes an image lacks); no CI and no group (one number per explainer)."""
    rows = []
    for (explainer, metric), arr in curves.items():
        spec = (metric_info.get(metric) or {}).get("dataset")
        scored = arr[np.isfinite(arr).any(axis=1)] if arr.ndim == 2 else arr[:0]
        if not spec or not len(scored):
            continue
        formula, description = CURVE_AGGREGATES[spec["name"]]
        rows.append(dict(explainer=explainer, metric=f"{metric}:dataset", mean=formula(scored, spec["params"]),
                         std=0.0, n=int(len(scored)), n_skipped=0, ci_low=float("nan"), ci_high=float("nan"),
                         higher_is_better=bool(metric_info[metric]["higher_is_better"]),
                         protocol=json.dumps({"aggregation": description, **spec["params"]}, sort_keys=True)))
    return rows


def summarize(
    scores: pd.DataFrame, metric_info: dict[str, dict[str, Any]], seed: int, skipped: dict[tuple[str, str], int] | None = None,
    curves: dict[tuple[str, str], np.ndarray] | None = None,
) -> pd.DataFrame:
    """Per (explainer, metric): mean, std, n, n_skipped, 95 % bootstrap CI, direction, protocol,
    rank group (results/stats.py); then, for each metric whose info has a `class_mean`
    description, the mean of per-class means, and for each with a `dataset` curve aggregate, that
    figure from its (explainer, metric) `curves` (no group: no per-image values)."""
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
    scored = {(r["explainer"], r["metric"]) for r in rows}
    for (explainer, metric), count in skipped.items():  # every image skipped: a row all the same (mean NaN)
        if count and (explainer, metric) not in scored and metric in metric_info:
            rows.append(dict(explainer=explainer, metric=metric, mean=float("nan"), std=0.0, n=0, n_skipped=int(count),
                             ci_low=float("nan"), ci_high=float("nan"),
                             higher_is_better=bool(metric_info[metric]["higher_is_better"]),
                             protocol=json.dumps(metric_info[metric].get("protocol", {}), sort_keys=True, default=str)))
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
    rows += dataset_rows(curves or {}, metric_info)
    out = pd.DataFrame(rows)
    return out.merge(rank_groups(scores, out, seed), on=["explainer", "metric"], how="left")[SUMMARY_COLUMNS]


def rank_groups(scores: pd.DataFrame, summary: pd.DataFrame, seed: int) -> pd.DataFrame:
    """(explainer, metric, group): the rank groups of the paired leaderboard (results/stats.py)."""
    from .stats import paired_board  # stats → statistics → this module

    directions = summary.groupby("metric", sort=False)["higher_is_better"].first().to_dict()
    per_image = scores.rename(columns={"index": "image"})
    board = paired_board(per_image[per_image["metric"].isin(directions)], directions, seed=seed)
    return board[["explainer", "metric", "group"]].astype({"group": "Int64"})

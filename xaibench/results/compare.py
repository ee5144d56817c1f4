"""Leaderboards over runs (`xai compare`): each run's summary.csv, its per-image scores.csv for the
paired statistics (rank groups, effect sizes, control margins, per class, meta-evaluation) and run.json.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import ConfigError, OutputError, did_you_mean
from . import meta, stats


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Run folders among `paths`; a folder without summary.csv contributes its sub-folders that have one."""
    runs: list[Path] = []
    for p in map(Path, paths):
        if (p / "summary.csv").is_file():
            runs.append(p)
        elif p.is_dir():
            found = sorted(q.parent for q in p.glob("*/summary.csv"))
            if not found:
                raise OutputError(f"{p} holds no summary.csv and no run folders with one")
            runs.extend(found)
        elif p.is_file() and p.suffix == ".csv":
            runs.append(p)
        else:
            raise OutputError(f"run folder not found: {p}")
    return runs


def _read_csv(path: Path, need: set[str], what: str) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise OutputError(f"cannot read {path}: {e}") from e
    if not need <= set(df.columns):
        raise OutputError(f"{path} is not a {what} (missing {', '.join(sorted(need - set(df.columns)))})")
    return df


def run_name(run: Path) -> str:
    return run.stem if run.suffix == ".csv" else run.name


def read_summary(run: Path) -> pd.DataFrame:
    path = run if run.suffix == ".csv" else run / "summary.csv"
    df = _read_csv(path, {"explainer", "metric", "mean", "higher_is_better"}, "summary.csv")
    df["run"] = run_name(run)
    return df


def read_run_json(run: Path) -> dict:
    """The run's run.json (next to its summary.csv), or {} when there is none."""
    path = (run.parent if run.suffix == ".csv" else run) / "run.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise OutputError(f"cannot read {path}: {e}") from e


def read_scores(run: Path) -> pd.DataFrame | None:
    """The run's per-image scores.csv, or None (a bare summary.csv, e.g. a baseline)."""
    path = (run.parent if run.suffix == ".csv" else run) / "scores.csv"
    if not path.is_file():
        return None
    return _read_csv(path, {"index", "id", "target", "explainer", "metric", "value"}, "scores.csv")


@dataclass
class Runs:
    """Runs loaded for comparison. `row` names an explainer of a run (`run/explainer` when
    several runs); `scores` has columns explainer (= row), metric, image, target, value."""

    summary: pd.DataFrame
    scores: pd.DataFrame | None
    directions: dict[str, bool]
    controls: set[str] = field(default_factory=set)
    seed: int = 0
    without_scores: list[str] = field(default_factory=list)


def load(paths: Sequence[str | Path]) -> Runs:
    """Read summary.csv, scores.csv and run.json of every run; images are matched by index within
    one run and by (id, target) across runs."""
    runs = find_runs(list(paths))
    multi = len(runs) > 1
    summaries, scores, controls, without, seeds = [], [], set(), [], []
    for run in runs:
        s = read_summary(run)
        s["row"] = s["run"] + "/" + s["explainer"] if multi else s["explainer"]
        summaries.append(s)
        info = read_run_json(run)
        seeds.append(int(info.get("seed", 0) or 0))
        label = (lambda e, r=run_name(run): f"{r}/{e}") if multi else (lambda e: e)
        controls |= {label(e) for e in info.get("controls", [])}
        per_image = read_scores(run)
        if per_image is None:
            without.append(run_name(run))
            continue
        image = per_image["id"].astype(str) + "|" + per_image["target"].astype(str) if multi else per_image["index"]
        scores.append(pd.DataFrame({"explainer": per_image["explainer"].map(label), "metric": per_image["metric"],
                                    "image": image, "target": per_image["target"], "value": per_image["value"]}))
    summary = pd.concat(summaries, ignore_index=True)
    directions = {m: bool(h) for m, h in summary.groupby("metric", sort=False)["higher_is_better"].first().items()}
    all_scores = pd.concat(scores, ignore_index=True) if scores else None
    if all_scores is not None:
        all_scores = all_scores[all_scores["metric"].isin(directions)]
    return Runs(summary, all_scores, directions, controls, seeds[0] if len(set(seeds)) == 1 else 0, without)


def select_metrics(runs: Runs, metrics: Sequence[str] | None, headline: bool = False) -> list[str]:
    """The metrics to show: `metrics` (checked against the runs), else all (headline: no sub-scores)."""
    present = list(dict.fromkeys(runs.summary["metric"]))
    for m in metrics or []:
        if m not in present:
            raise ConfigError(f"--metric: no metric '{m}' in these runs.{did_you_mean(m, present)} Valid: {', '.join(present)}")
    if metrics:
        return list(metrics)
    return [m for m in present if ":" not in m] if headline else present


def leaderboard(paths: Sequence[str | Path], sort: str | None = None, metrics: Sequence[str] | None = None,
                alpha: float = stats.ALPHA, runs: Runs | None = None) -> pd.DataFrame:
    """Long table, one row per (run, explainer, metric): summary.csv's columns and the paired
    statistics of results/stats.py (rank, group, differences from the leader, control margins;
    empty without scores.csv). Warns about explainers ranked on fewer images than the others."""
    runs = runs or load(paths)
    if not 0 < alpha < 1:
        raise ConfigError(f"--alpha must be in (0, 1), got {alpha}")
    keep = select_metrics(runs, metrics)
    df = runs.summary[runs.summary["metric"].isin(keep)].copy()
    if sort is not None and sort not in set(df["metric"]):
        valid = sorted(set(df["metric"]))
        raise ConfigError(f"--sort: no metric '{sort}' in these runs.{did_you_mean(sort, valid)} Valid: {', '.join(valid)}")
    warn_protocols(df)
    df["control"] = df["row"].isin(runs.controls)
    if runs.scores is None or runs.scores.empty:
        return _ranked_by_mean(df)
    if runs.without_scores:
        warnings.warn(f"no scores.csv in {', '.join(runs.without_scores)}: those rows are not ranked", stacklevel=2)
    scores = runs.scores[runs.scores["metric"].isin(keep)]
    board = stats.paired_board(scores, runs.directions, runs.controls, alpha, runs.seed)
    board = board.drop(columns=["n", "mean", "control"]).rename(columns={"explainer": "row"})
    df = df.drop(columns=["group"], errors="ignore").merge(board, on=["row", "metric"], how="left")  # groups over all rows
    warn_partial(df)
    return df


def _ranked_by_mean(df: pd.DataFrame) -> pd.DataFrame:
    """Without per-image scores: rank by mean only; no groups, no paired statistics."""
    warnings.warn("no scores.csv beside summary.csv: explainers are ranked by their means only "
                  "(no rank groups, no paired statistics)", stacklevel=3)
    df = df.drop(columns=["group"], errors="ignore")  # a run's own groups do not compare across runs
    signed = df["mean"] * df["higher_is_better"].map({True: 1.0, False: -1.0})
    df["rank"] = signed.groupby(df["metric"]).rank(ascending=False, method="min")
    return df


def warn_protocols(df: pd.DataFrame) -> None:
    if "protocol" not in df or df["run"].nunique() < 2:
        return
    for metric, grp in df.groupby("metric"):
        if grp["protocol"].fillna("").nunique() > 1:
            warnings.warn(f"metric '{metric}' was measured with different protocols across runs; "
                          "its numbers are not comparable", stacklevel=2)


def warn_partial(df: pd.DataFrame) -> None:
    """One warning naming the explainers measured on fewer images than the most-measured ones."""
    part = df[df["partial"].fillna(False).astype(bool)]
    if part.empty:
        return
    fewest = part.groupby("row")["n"].min().sort_values()
    names = ", ".join(f"{r} ({int(n)})" for r, n in fewest.items())
    warnings.warn(f"fewer images than the other explainers (per-explainer limit) — {names}: each is compared "
                  "with the others on the images they share and marked † (not ranked on a different image set "
                  "silently)", stacklevel=3)


def headline(df: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard without sub-scores (`box_iou:hit`, `road_combined:morf`, …)."""
    return df[~df["metric"].str.contains(":", regex=False)]


def class_table(paths: Sequence[str | Path], metrics: Sequence[str] | None = None, runs: Runs | None = None) -> pd.DataFrame:
    """Per metric, class and explainer: mean, n, rank in the class, partial (results/stats.py `by_class`)."""
    runs = runs or load(paths)
    if runs.scores is None:
        raise OutputError(f"--by class needs per-image scores: no scores.csv in {', '.join(runs.without_scores)}")
    keep = select_metrics(runs, metrics)
    return stats.by_class(runs.scores[runs.scores["metric"].isin(keep)], runs.directions)


def meta_tables(paths: Sequence[str | Path], metrics: Sequence[str] | None = None, alpha: float = stats.ALPHA,
                runs: Runs | None = None, n_splits: int = 100) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(agreement matrix, reliability table) of results/meta.py over the chosen metrics (default:
    the headline metrics, no sub-scores)."""
    runs = runs or load(paths)
    if runs.scores is None:
        raise OutputError(f"--meta needs per-image scores: no scores.csv in {', '.join(runs.without_scores)}")
    keep = select_metrics(runs, metrics, headline=True)
    scores = runs.scores[runs.scores["metric"].isin(keep)]
    board = stats.paired_board(scores, runs.directions, runs.controls, alpha, runs.seed)
    rel = meta.reliability(scores, runs.directions, runs.controls, board, n_splits=n_splits, seed=runs.seed)
    return meta.agreement(board, keep), rel

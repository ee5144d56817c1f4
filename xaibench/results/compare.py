"""Leaderboards over runs and the CI regression check (`xai compare`, `xai compare --check`).

Reads only each run's `summary.csv`; explainers are rows, metrics columns (mean ± 95 % CI).
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import ConfigError, OutputError, did_you_mean


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


def read_summary(run: Path) -> pd.DataFrame:
    path = run if run.suffix == ".csv" else run / "summary.csv"
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError) as e:
        raise OutputError(f"cannot read {path}: {e}") from e
    need = {"explainer", "metric", "mean", "higher_is_better"}
    if not need <= set(df.columns):
        raise OutputError(f"{path} is not a summary.csv (missing {', '.join(sorted(need - set(df.columns)))})")
    df["run"] = run.stem if run.suffix == ".csv" else run.name
    return df


def leaderboard(runs: list[str | Path], sort: str | None = None) -> pd.DataFrame:
    """Long table of every (run, explainer, metric) with mean, CI and a tie flag vs the leader.

    `tie` is True where the row's 95 % CI overlaps the best row's CI for that metric.
    """
    frames = [read_summary(r) for r in find_runs(runs)]
    df = pd.concat(frames, ignore_index=True)
    warn_protocols(df)
    df["tie"] = False
    df["rank"] = 0
    for _, grp in df.groupby("metric"):
        hib = bool(grp["higher_is_better"].iloc[0])
        order = grp["mean"].rank(ascending=not hib, method="min")  # NaN means (nothing scored) stay NaN
        df.loc[grp.index, "rank"] = order.fillna(len(grp)).astype(int)  # … and rank last
        if order.isna().all():
            continue  # no leader, no ties
        best = grp.loc[order.idxmin()]
        if "ci_low" in grp and pd.notna(best.get("ci_low")):
            overlap = (grp["ci_high"] >= best["ci_low"]) & (grp["ci_low"] <= best["ci_high"])
            df.loc[grp.index, "tie"] = overlap & (grp.index != order.idxmin())
    if sort is not None:
        metrics = sorted(df["metric"].unique())
        if sort not in metrics:
            raise ConfigError(f"--sort: no metric '{sort}' in these runs.{did_you_mean(sort, metrics)} Valid: {', '.join(metrics)}")
    return df


def warn_protocols(df: pd.DataFrame) -> None:
    if "protocol" not in df or df["run"].nunique() < 2:
        return
    for metric, grp in df.groupby("metric"):
        if grp["protocol"].fillna("").nunique() > 1:
            warnings.warn(f"metric '{metric}' was measured with different protocols across runs; "
                          "its numbers are not comparable", stacklevel=2)


def wide(df: pd.DataFrame, sort: str | None = None) -> pd.DataFrame:
    """Explainers (per run when several) × metrics, cells 'mean ± half-CI' (* marks a tie with the leader)."""
    multi = df["run"].nunique() > 1
    df = df.copy()
    df["row"] = df["run"] + "/" + df["explainer"] if multi else df["explainer"]
    half = (df["ci_high"] - df["ci_low"]) / 2 if "ci_low" in df else 0.0
    df["cell"] = [f"{m:.4g} ± {h:.2g}{'*' if t else ''}" if pd.notna(m) else "—"
                  for m, h, t in zip(df["mean"], half, df["tie"])]
    table = df.pivot_table(index="row", columns="metric", values="cell", aggfunc="first")
    if sort is not None:
        hib = bool(df[df.metric == sort]["higher_is_better"].iloc[0])
        means = df[df.metric == sort].set_index("row")["mean"]
        table = table.loc[means.sort_values(ascending=not hib).index.intersection(table.index)]
    table.index.name = "explainer"
    table.columns.name = None
    return table.fillna("—")


def headline(df: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard without sub-scores (`box_iou:hit`, `road_combined:morf`, …)."""
    return df[~df["metric"].str.contains(":", regex=False)]


def render(df: pd.DataFrame, fmt: str, sort: str | None = None) -> str:
    """The leaderboard as `table` (wrapped to the terminal width), `markdown`, `csv` or `json`."""
    if fmt == "csv":
        return df.drop(columns=["row", "cell"], errors="ignore").to_csv(index=False)
    if fmt == "json":
        return df.drop(columns=["row", "cell"], errors="ignore").to_json(orient="records", indent=2)
    table = wide(df, sort)
    if fmt == "markdown":
        cols = ["explainer", *table.columns]
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join([idx, *map(str, row)]) + " |" for idx, row in zip(table.index, table.values)]
        return "\n".join(lines) + "\n\n(mean ± 95 % CI half-width; * = CI overlaps the leader's)"
    if fmt == "table":
        arrows = {m: ("↑" if hib else "↓") for m, hib in df.groupby("metric")["higher_is_better"].first().items()}
        table.columns = [f"{c} {arrows.get(c, '')}" for c in table.columns]
        width = shutil.get_terminal_size((120, 24)).columns
        return table.to_string(line_width=width) + "\n(mean ± 95 % CI half-width; ↑/↓ better; * = CI overlaps the leader's)"
    raise ConfigError(f"--format: unknown '{fmt}'. Valid: table, csv, markdown, json")


@dataclass
class Regression:
    explainer: str
    metric: str
    baseline: float
    current: float
    higher_is_better: bool

    def __str__(self) -> str:
        direction = "higher" if self.higher_is_better else "lower"
        return (f"{self.explainer} / {self.metric}: {self.current:.4f} vs baseline {self.baseline:.4f} "
                f"({direction} is better)")


def check(runs: list[str | Path], baseline: str | Path, tolerance: float = 0.02) -> tuple[list[Regression], list[str]]:
    """Compare runs with a baseline summary.csv; a regression is a change in the metric's worse
    direction by more than `tolerance` (absolute). Returns (regressions, pairs missing from the runs)."""
    base = read_summary(Path(baseline))
    cur = pd.concat([read_summary(r) for r in find_runs(runs)], ignore_index=True)
    merged = base.merge(cur, on=["explainer", "metric"], how="left", suffixes=("_base", ""))
    regressions, missing = [], []
    for row in merged.itertuples():
        if pd.isna(row.mean) and not pd.isna(row.mean_base):
            missing.append(f"{row.explainer} / {row.metric}")
            continue
        hib = bool(row.higher_is_better_base)
        worse = (row.mean_base - row.mean) if hib else (row.mean - row.mean_base)
        if pd.notna(worse) and worse > tolerance:
            regressions.append(Regression(row.explainer, row.metric, float(row.mean_base), float(row.mean), hib))
    return regressions, missing

"""Figures of the run's statistics tables (results/tables.py): the rank-group leaderboard, the
metrics' agreement heatmap and their reliability bar chart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .tables import read_tables


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw(run_dir: str | Path, out: Path) -> list[Path]:
    """figures/leaderboard.png (rank groups), agreement.png and reliability.png of a run."""
    tables = read_tables(run_dir)
    board = tables["leaderboard.csv"]
    board = board[~board["metric"].astype(str).str.contains(":", regex=False)]
    written = [p for p in (leaderboard_groups(board, out / "leaderboard.png"),
                           agreement_heatmap(tables["agreement.csv"].set_index("metric"), out / "agreement.png"),
                           reliability_bars(tables["reliability.csv"], out / "reliability.png")) if p is not None]
    return written


def group_shades(groups: pd.DataFrame) -> pd.DataFrame:
    """Per metric column: 0 for rank group 1 … 1 for the column's last group (0 when one group)."""
    last = groups.max()
    return (groups - 1) / (last - 1).where(last > 1, 1)


def leaderboard_groups(board: pd.DataFrame, path: Path) -> Path | None:
    """Explainers × metrics, cell = mean and (rank group), shaded by group (green = group 1);
    † fewer images; controls at the bottom, in italics."""
    if board.empty:
        return None
    plt = _plt()
    metrics = list(dict.fromkeys(board["metric"]))
    control = board.groupby("explainer")["control"].first().astype(bool)
    first = board[board["metric"] == metrics[0]].set_index("explainer")["rank"]
    order = sorted(control.index, key=lambda e: (control[e], first.get(e, np.inf), e))
    means = board.pivot_table(index="explainer", columns="metric", values="mean").reindex(index=order, columns=metrics)
    groups = board.pivot_table(index="explainer", columns="metric", values="group").reindex(index=order, columns=metrics)
    partial = board.pivot_table(index="explainer", columns="metric", values="partial", aggfunc="first")
    partial = partial.reindex(index=order, columns=metrics).fillna(False).astype(bool)
    fig, ax = plt.subplots(figsize=(1.15 * len(metrics) + 2.5, 0.36 * len(order) + 1.6))
    ax.imshow(group_shades(groups).to_numpy(dtype=float), cmap="RdYlGn_r", vmin=0, vmax=1, aspect="auto")
    for i in range(len(order)):
        for j in range(len(metrics)):
            m, g = means.iat[i, j], groups.iat[i, j]
            text = "—" if pd.isna(m) else f"{m:.3g} ({int(g)}){'†' if partial.iat[i, j] else ''}"
            ax.text(j, i, text, ha="center", va="center", fontsize=6)
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels(metrics, rotation=40, ha="right", fontsize=7)
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels(order, fontsize=7)
    for label, name in zip(ax.get_yticklabels(), order):
        label.set_fontstyle("italic" if control[name] else "normal")
    ax.set_title("mean (rank group) — green: group 1, not significantly different from the leader "
                 "(Wilcoxon, Holm); † fewer images; controls in italics", fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")  # a third faster than tight_layout: the texts laid out once
    plt.close(fig)
    return path


def agreement_heatmap(agreement: pd.DataFrame, path: Path) -> Path | None:
    """Metrics × metrics Kendall τ_b between their explainer rankings, −1 (red) … 1 (blue)."""
    if agreement.empty:
        return None
    plt = _plt()
    k = len(agreement)
    fig, ax = plt.subplots(figsize=(0.5 * k + 2.5, 0.45 * k + 1.5))
    image = ax.imshow(agreement.to_numpy(dtype=float), cmap="RdBu", vmin=-1, vmax=1)
    for i in range(k):
        for j in range(k):
            v = agreement.iat[i, j]
            ax.text(j, i, "—" if pd.isna(v) else f"{v:.2f}", ha="center", va="center", fontsize=6)
    ax.set_xticks(range(k))
    ax.set_xticklabels(agreement.columns, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(k))
    ax.set_yticklabels(agreement.index, fontsize=7)
    fig.colorbar(image, ax=ax, fraction=0.04, label="Kendall τ_b")
    ax.set_title("agreement of the metrics' rankings of the real explainers", fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")  # a third faster than tight_layout: the texts laid out once
    plt.close(fig)
    return path


def reliability_bars(reliability: pd.DataFrame, path: Path) -> Path | None:
    """Per metric: split-half reliability, Krippendorff's α and discrimination, side by side."""
    if reliability.empty:
        return None
    plt = _plt()
    k = len(reliability)
    x = np.arange(k)
    fig, ax = plt.subplots(figsize=(0.6 * k + 2.5, 3.8))
    bars = (("split_half", "split-half (Spearman–Brown)"), ("alpha", "Krippendorff's α (images as raters)"),
            ("discrimination", "discrimination (beats controls)"))
    for i, (col, label) in enumerate(bars):
        ax.bar(x + (i - 1) * 0.27, reliability[col].astype(float).fillna(0.0), width=0.27, label=label)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(x)
    ax.set_xticklabels(reliability["metric"], rotation=40, ha="right", fontsize=7)
    ax.set_ylim(min(-0.2, float(np.nanmin(reliability[["split_half", "alpha"]].to_numpy(dtype=float), initial=0))), 1.05)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=3, frameon=False)
    ax.set_title("reliability of each metric's ranking over images, and its discrimination", fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path

"""Figures of a run, drawn from `results.h5` and the CSV tables alone (no model, no dataset):
map overlays, mean insertion/deletion curves, the rank-group leaderboard, agreement and reliability.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ..errors import OutputError


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def make_figures(run_dir: str | Path) -> list[Path]:
    """Write figures/overlays.png, curves.png, leaderboard.png (rank groups), agreement.png and
    reliability.png (stat_figures.py; the stats/ tables are written first when absent); return the paths."""
    run_dir = Path(run_dir)
    h5_path = run_dir / "results.h5"
    if not h5_path.is_file():
        raise OutputError(f"{run_dir} holds no results.h5 (not a finished run)")
    out = run_dir / "figures"
    out.mkdir(exist_ok=True)
    written = []
    with h5py.File(h5_path, "r") as h5:
        if "preview/images" in h5 and "maps" in h5 and len(h5["maps"]):
            written.append(overlays(h5, out / "overlays.png"))
        if "curves" in h5:
            path = curves(h5, out / "curves.png")
            if path:
                written.append(path)
    summary = run_dir / "summary.csv"
    if (run_dir / "scores.csv").is_file():  # rank groups, agreement, reliability from the stats/ tables
        from .stat_figures import draw

        written += draw(run_dir, out)
    elif summary.is_file():
        path = leaderboard_figure(pd.read_csv(summary), out / "leaderboard.png")
        if path:
            written.append(path)
    return written


def _display(m: np.ndarray) -> np.ndarray:
    """A map scaled to [0,1] for display (NaN → 0; constant → 0)."""
    m = np.nan_to_num(m.astype(np.float32))
    lo, hi = m.min(), m.max()
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def overlays(h5: h5py.File, path: Path, rows: int = 6) -> Path:
    """Grid: the run's first images × explainers, maps over the image, ground truth outlined."""
    images = h5["preview/images"][:rows]
    maps = {e: h5["maps"][e][: len(images)] for e in h5["maps"]}
    boxes = h5["preview/boxes"][:rows] if "preview/boxes" in h5 else None
    masks = h5["preview/masks"][:rows] if "preview/masks" in h5 else None
    labels = [f"target {t}" for t in h5["samples/target"][: len(images)]]
    return overlay_grid(images, maps, labels, path, boxes, masks)


def overlay_grid(images: np.ndarray, maps: dict[str, np.ndarray], labels: list[str], path: Path,
                 boxes: np.ndarray | None = None, masks: np.ndarray | None = None) -> Path:
    """Images (N,H,W,3 uint8) × explainers: each map scaled for display over its image."""
    plt = _plt()
    n, m = len(images), len(maps) + 1
    names = list(maps)
    fig, axes = plt.subplots(n, m, figsize=(1.7 * m, 1.7 * n + 0.3), squeeze=False)
    for i in range(n):
        for j in range(m):
            ax = axes[i, j]
            ax.imshow(images[i])
            if j > 0:
                sal = maps[names[j - 1]][i]
                if np.isfinite(sal).any():
                    ax.imshow(_display(sal), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            if masks is not None:
                ax.contour(masks[i].astype(float), levels=[0.5], colors="white", linewidths=0.8)
            if boxes is not None:
                for b in boxes[i]:
                    if np.isfinite(b).all():
                        ax.add_patch(plt.Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, ec="lime", lw=0.8))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title("image" if j == 0 else names[j - 1], fontsize=8)
        axes[i, 0].set_ylabel(labels[i], fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def curves(h5: h5py.File, path: Path) -> Path | None:
    """Mean insertion and deletion curves per explainer, AUC in the legend."""
    plt = _plt()
    kinds = [k for k in ("deletion", "insertion") if any(k in h5["curves"][e] for e in h5["curves"])]
    if not kinds:
        return None
    fig, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 3.6), squeeze=False)
    styles = ("-", "--", ":")  # the colour cycle has 10 colours; line styles tell repeats apart
    for ax, kind in zip(axes[0], kinds):
        for i, e in enumerate(h5["curves"]):
            if kind not in h5["curves"][e]:
                continue
            c = h5["curves"][e][kind][:]
            c = c[np.isfinite(c).all(1)]
            if not len(c):
                continue
            mean = c.mean(0)
            x = np.linspace(0, 1, len(mean))
            auc = float(np.trapezoid(mean, x))
            ax.plot(x, mean, styles[(i // 10) % 3], label=f"{e} ({auc:.3f})")
        ax.set_title(f"{kind} (AUC; {'lower' if kind == 'deletion' else 'higher'} is better)")
        ax.set_xlabel("fraction of pixels " + ("removed" if kind == "deletion" else "inserted"))
        ax.set_ylabel("score of the target class")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.subplots_adjust(wspace=0.25)
    fig.savefig(path, dpi=110, bbox_inches="tight")  # the legends sit below the axes, outside them
    plt.close(fig)
    return path


def leaderboard_shades(means: pd.DataFrame, higher_is_better: pd.Series) -> pd.DataFrame:
    """Per metric column: 0 for the best explainer in the metric's direction … 1 for the worst."""
    signed = means * higher_is_better.reindex(means.columns).astype(bool).map({True: -1.0, False: 1.0})
    return (signed.rank(ascending=True) - 1) / max(len(means) - 1, 1)


def leaderboard_figure(summary: pd.DataFrame, path: Path) -> Path | None:
    """Explainers × metrics table, each column coloured by rank in the metric's own direction."""
    if summary.empty:
        return None
    plt = _plt()
    means = summary.pivot_table(index="explainer", columns="metric", values="mean")
    hib = summary.groupby("metric")["higher_is_better"].first()
    norm = leaderboard_shades(means, hib)
    fig, ax = plt.subplots(figsize=(1.1 * len(means.columns) + 2, 0.4 * len(means) + 1.2))
    ax.imshow(norm.to_numpy(dtype=float), cmap="RdYlGn_r", vmin=0, vmax=1, aspect="auto")
    for i in range(means.shape[0]):
        for j in range(means.shape[1]):
            v = means.iat[i, j]
            ax.text(j, i, "—" if pd.isna(v) else f"{v:.3f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(means.shape[1]))
    ax.set_xticklabels([f"{c} {'↑' if hib.get(c, True) else '↓'}" for c in means.columns], rotation=40, ha="right", fontsize=7)
    ax.set_yticks(range(means.shape[0]))
    ax.set_yticklabels(means.index, fontsize=8)
    ax.set_title("leaderboard (green = best rank per metric)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

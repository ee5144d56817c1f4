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
    """Images (N,H,W,3 uint8) × explainers: each map scaled for display over its image (jet at
    alpha 0.5), mask outlines in white, boxes in lime — one mosaic picture in one axes (a grid of
    axes costs seconds to build and draw at 30 explainers)."""
    plt = _plt()
    n, m = len(images), len(maps) + 1
    names = list(maps)
    jet = plt.get_cmap("jet")
    h, w = images.shape[1:3]
    gap = max(2, w // 24)  # px between pictures
    canvas = np.ones((n * h + (n - 1) * gap, m * w + (m - 1) * gap, 3), dtype=np.float32)
    for i in range(n):
        base = images[i].astype(np.float32) / 255
        edge = outline(masks[i]) if masks is not None else None
        for j in range(m):
            cell = canvas[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w]
            cell[:] = base if j == 0 else blend(base, maps[names[j - 1]][i], jet)
            if edge is not None:
                cell[edge] = 1.0
    inch = 1.7 / w  # inches per pixel: 1.7-inch pictures
    left, top = 0.25, 0.3  # inches for the image labels and the explainer names
    fw, fh = left + canvas.shape[1] * inch, top + canvas.shape[0] * inch
    fig = plt.figure(figsize=(fw, fh))
    ax = fig.add_axes((left / fw, 0.0, canvas.shape[1] * inch / fw, canvas.shape[0] * inch / fh))
    ax.imshow(canvas)
    ax.set_axis_off()
    for j in range(m):
        ax.text(j * (w + gap) + (w - 1) / 2, -gap, "image" if j == 0 else names[j - 1], ha="center", va="bottom",
                fontsize=8)
    for i in range(n):
        ax.text(-gap, i * (h + gap) + (h - 1) / 2, labels[i], rotation=90, ha="right", va="center", fontsize=7)
        for b in (boxes[i] if boxes is not None else ()):
            if np.isfinite(b).all():
                for j in range(m):
                    ax.add_patch(plt.Rectangle((b[0] + j * (w + gap), b[1] + i * (h + gap)), b[2] - b[0], b[3] - b[1],
                                               fill=False, ec="lime", lw=0.8))
    fig.savefig(path, dpi=110, pil_kwargs={"compress_level": 3})  # zlib's default 6: 2.5× the time for 12 % less
    plt.close(fig)
    return Path(path)


def blend(base: np.ndarray, sal: np.ndarray, cmap) -> np.ndarray:
    """The map scaled for display, coloured by `cmap`, at alpha 0.5 over `base` (H,W,3 in [0,1]);
    `base` alone when the map has no finite value."""
    if not np.isfinite(sal).any():
        return base
    if sal.shape != base.shape[:2]:  # a map at another resolution: bilinear to the image's
        from scipy.ndimage import zoom

        sal = zoom(np.nan_to_num(sal.astype(np.float32)), (base.shape[0] / sal.shape[0], base.shape[1] / sal.shape[1]),
                   order=1, grid_mode=True, mode="nearest")
    return 0.5 * cmap(_display(sal))[..., :3] + 0.5 * base


def outline(mask: np.ndarray) -> np.ndarray:
    """The pixels of the mask (> 0.5) that touch its outside (4-neighbours): its one-pixel outline."""
    from scipy.ndimage import binary_erosion

    inside = np.asarray(mask) > 0.5
    return inside & ~binary_erosion(inside, border_value=1)


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

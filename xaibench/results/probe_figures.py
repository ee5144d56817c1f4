"""Figures of the model-level probes (docs/methods.md §Feature purity, §4): purity per layer and its threshold
sweep; neuron-similarity curves, channel-visualization grids, class averages and pruning.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "x"


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def plot(name: str, tables: dict[str, Any], outdir: Path) -> list[Path]:
    """Write the PNG figures of probe `name` from its output `tables` into `outdir`; returns
    the paths written (an unknown probe name writes nothing)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    if name == "feature_purity":
        return purity_figures(tables, outdir)
    if name == "neuron_similarity":
        return similarity_figures(tables, outdir)
    return []


# ------------------------------------------------------------------------------------- purity
def purity_figures(tables: dict[str, Any], outdir: Path) -> list[Path]:
    """purity_layers.png (purity per layer, stage layers marked) and purity_sweep.png (purity
    against τ, one line per layer)."""
    plt = _plt()
    paths = []
    table = tables["purity"]
    fig, ax = plt.subplots(figsize=(max(5, 0.45 * len(table) + 2), 3.6))
    colors = ["tab:orange" if s else "tab:blue" for s in table.stage]
    ax.bar(range(len(table)), table.purity, color=colors)
    ax.set_xticks(range(len(table)))
    ax.set_xticklabels([f"{lay}\n{st}" if st else lay for lay, st in zip(table.layer, table.stage)],
                       rotation=60, ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"feature purity (τ={table.tau.iloc[0]:g})")
    ax.set_title("Feature purity per layer (orange: last layer of a stage)")
    paths.append(_save(fig, outdir / "purity_layers.png"))
    if "sweep" in tables and len(tables["sweep"]):
        sweep = tables["sweep"]
        fig, ax = plt.subplots(figsize=(6, 4))
        for _, rows in sweep.groupby("order", sort=True):
            lab = rows.layer.iloc[0] + (f" ({rows.stage.iloc[0]})" if rows.stage.iloc[0] else "")
            ax.plot(rows.tau, rows.purity, marker="o", ms=3, label=lab)
        ax.set_xlabel("threshold τ")
        ax.set_ylabel("feature purity")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=6, ncol=2)
        ax.set_title("Feature purity vs threshold")
        paths.append(_save(fig, outdir / "purity_sweep.png"))
    return paths


# ------------------------------------------------------------------------------------- similarity
def similarity_figures(tables: dict[str, Any], outdir: Path) -> list[Path]:
    """similarity_curves_<average>_m<method>.png, grid_<layer>.png, class_averages.png, pruning.png."""
    paths = []
    if "curves" in tables:
        paths += curve_figures(tables["curves"], outdir)
    if "grids" in tables and "grid_index" in tables:
        paths += grid_figures(np.asarray(tables["grids"]), tables["grid_index"], outdir)
    if "class_averages" in tables and "class_average_info" in tables:
        paths.append(class_average_figure(np.asarray(tables["class_averages"]), tables["class_average_info"], outdir))
    if "pruning" in tables and len(tables["pruning"]):
        paths.append(pruning_figure(tables["pruning"], outdir))
    return paths


def curve_figures(curves: pd.DataFrame, outdir: Path) -> list[Path]:
    """Per (average, method): mean ± std of similarity over channels per layer, thin lines per
    class, a thick line for the average over classes (thesis ch. 4 curves)."""
    plt = _plt()
    paths = []
    for (avg, method), part in curves.groupby(["average", "method"], sort=True):
        fig, ax = plt.subplots(figsize=(max(5, 0.5 * part.order.nunique() + 2), 3.8))
        for cls, rows in part[part.scope == "class"].groupby("class"):
            rows = rows.sort_values("order")
            ax.plot(rows.order, rows["mean"], lw=0.8, alpha=0.5, label=f"class {cls}")
        mean = part[part.scope == "mean"].sort_values("order")
        ax.errorbar(mean.order, mean["mean"], yerr=mean["std"], color="k", lw=2, capsize=3, label="mean ± std")
        ax.set_xticks(mean.order)
        ax.set_xticklabels([f"{lay}\n{st}" if st else lay for lay, st in zip(mean.layer, mean.stage)],
                           rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("cosine similarity")
        ax.set_title(f"Neuron similarity per layer — {avg} average, method {method}")
        ax.legend(fontsize=6, ncol=2)
        paths.append(_save(fig, outdir / f"similarity_curves_{_slug(avg)}_m{method}.png"))
    return paths


def mosaic(tiles: np.ndarray, pad: int = 2) -> np.ndarray:
    """(R,C,H,W,3) images → one (R·(H+pad)−pad, C·(W+pad)−pad, 3) image with white gutters."""
    r, c, h, w = tiles.shape[:4]
    out = np.ones((r * (h + pad) - pad, c * (w + pad) - pad, 3), dtype=np.float32)
    for i in range(r):
        for j in range(c):
            out[i * (h + pad):i * (h + pad) + h, j * (w + pad):j * (w + pad) + w] = tiles[i, j]
    return out


def _mosaic_figure(tiles: np.ndarray, row_labels: list[str], col_labels: list[str], title: str, path: Path,
                   tile_titles: dict[tuple[int, int], str] | None = None) -> Path:
    """One imshow of the tile mosaic (fast for hundreds of tiles), labelled rows and columns."""
    plt = _plt()
    r, c, h, w = tiles.shape[:4]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.85 * c + 1), max(2.0, 0.9 * r + 0.8)))
    ax.imshow(mosaic(tiles))
    ax.set_xticks([j * (w + 2) + w / 2 for j in range(c)])
    ax.set_xticklabels(col_labels, fontsize=6)
    ax.set_yticks([i * (h + 2) + h / 2 for i in range(r)])
    ax.set_yticklabels(row_labels, fontsize=6)
    ax.tick_params(length=0)
    for (i, j), text in (tile_titles or {}).items():
        ax.text(j * (w + 2) + w / 2, i * (h + 2) + 2, text, fontsize=4.5, ha="center", va="top", color="k",
                bbox=dict(facecolor="white", alpha=0.6, lw=0, pad=0.5))
    ax.set_title(title, fontsize=8)
    return _save(fig, path)


def grid_figures(grids: np.ndarray, index: pd.DataFrame, outdir: Path) -> list[Path]:
    """One PNG per layer: a row per class, top-8 then bottom-8 channel visualizations, each
    labelled with its channel and similarity."""
    paths = []
    layers = list(dict.fromkeys(index.layer))
    cols = [f"top {i + 1}" for i in range(8)] + [f"bottom {i + 1}" for i in range(8)]
    for li, layer in enumerate(layers):
        rows = index[index.layer == layer]
        classes = list(dict.fromkeys(rows["class"]))[: grids.shape[1]]
        where = {cls: i for i, cls in enumerate(classes)}
        titles = {(where[cl], int(sl)): f"ch{int(ch)} {sim:.2f}"
                  for cl, sl, ch, sim in zip(rows["class"], rows.slot, rows.channel, rows.similarity) if cl in where}
        tiles = grids[li, : len(classes)].astype(np.float32) / 255.0
        paths.append(_mosaic_figure(tiles, [f"class {c}" for c in classes], cols,
                                    f"{layer}: top-8 (left) and bottom-8 (right) channels by similarity",
                                    outdir / f"grid_{_slug(layer)}.png", titles))
    return paths


def class_average_figure(images: np.ndarray, info: pd.DataFrame, outdir: Path) -> Path:
    """class_averages.png: a row per average kind, a column per class (pixel space); and each
    image at full resolution as class_averages/<kind>_class<c>.png."""
    plt = _plt()
    kinds = list(dict.fromkeys(info.average))
    classes = list(dict.fromkeys(info["class"]))
    (outdir / "class_averages").mkdir(exist_ok=True)
    for a, kind in enumerate(kinds):
        for c, cls in enumerate(classes):
            plt.imsave(outdir / "class_averages" / f"{_slug(kind)}_class{cls}.png", np.clip(images[a, c], 0, 1))
    return _mosaic_figure(np.clip(images, 0, 1), kinds, [f"class {c}" for c in classes], "Class-average images",
                          outdir / "class_averages.png")


def pruning_figure(table: pd.DataFrame, outdir: Path) -> Path:
    """pruning.png: accuracy after zeroing the top-p vs the bottom-p channels per layer."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(table) + 2), 3.8))
    pos = np.arange(len(table))
    ax.bar(pos - 0.2, table.acc_top, 0.4, label="top-p similarity pruned")
    ax.bar(pos + 0.2, table.acc_bottom, 0.4, label="bottom-p similarity pruned")
    ax.axhline(float(table.acc_unpruned.iloc[0]), color="k", ls="--", lw=1, label="unpruned")
    ax.set_xticks(pos)
    ax.set_xticklabels(table.layer, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("Pruning validation (thesis Table 5-1)")
    return _save(fig, outdir / "pruning.png")

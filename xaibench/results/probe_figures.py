"""Figures of the model-level probes (SEED_METHODS.md §3, §4): purity per layer and its threshold
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


def grid_figures(grids: np.ndarray, index: pd.DataFrame, outdir: Path) -> list[Path]:
    """One PNG per layer: a row per class, top-8 then bottom-8 channel visualizations."""
    plt = _plt()
    paths = []
    layers = list(dict.fromkeys(index.layer))
    for li, layer in enumerate(layers):
        g = grids.shape[1]
        fig, axes = plt.subplots(g, 16, figsize=(16 * 0.9, g * 1.05 + 0.4), squeeze=False)
        rows = index[index.layer == layer]
        classes = list(dict.fromkeys(rows["class"]))
        for ci in range(g):
            for slot in range(16):
                ax = axes[ci, slot]
                ax.imshow(grids[li, ci, slot])
                ax.set_xticks([])
                ax.set_yticks([])
                hit = rows[(rows["class"] == classes[ci]) & (rows.slot == slot)] if ci < len(classes) else rows[:0]
                if len(hit):
                    ax.set_title(f"ch{int(hit.channel.iloc[0])} {hit.similarity.iloc[0]:.2f}", fontsize=5)
                if slot == 0 and ci < len(classes):
                    ax.set_ylabel(f"class {classes[ci]}", fontsize=6)
        fig.suptitle(f"{layer}: top-8 (left) and bottom-8 (right) channels by similarity", fontsize=8)
        paths.append(_save(fig, outdir / f"grid_{_slug(layer)}.png"))
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
    fig, axes = plt.subplots(len(kinds), len(classes), figsize=(1.2 * len(classes), 1.3 * len(kinds) + 0.3),
                             squeeze=False)
    for a, kind in enumerate(kinds):
        for c, cls in enumerate(classes):
            ax = axes[a, c]
            ax.imshow(np.clip(images[a, c], 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            if a == 0:
                ax.set_title(f"class {cls}", fontsize=7)
            if c == 0:
                ax.set_ylabel(kind, fontsize=7)
    return _save(fig, outdir / "class_averages.png")


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

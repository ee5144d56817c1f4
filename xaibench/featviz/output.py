"""Writing activation-maximization results (docs/methods.md §Pyramid activation maximization "Outputs"): a PNG per target, a
captioned grid, CSVs of the objective per step and of the final values, and the same in HDF5.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from ..errors import DataError, OutputError


def read_image(path: str | Path) -> Tensor:
    """(1,3,H,W) float pixels in [0,1] from an image file (any PIL format, converted to RGB)."""
    p = Path(path).expanduser()
    try:
        with Image.open(p) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read init image {p}: {e}") from e
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0)


def to_uint8(images: Tensor) -> np.ndarray:
    """(T,3,H,W) pixels in [0,1] → (T,H,W,3) uint8."""
    return (images.detach().float().clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy())


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:40] or "target"


def image_grid(images: Tensor, captions: list[str] | None = None, columns: int | None = None,
               scale: int = 1, pad: int = 4) -> Image.Image:
    """A white-background grid of (T,3,H,W) pixel images, each optionally upscaled by `scale`
    (nearest) with a one-line caption under it."""
    tiles = to_uint8(images)
    t, h, w, _ = tiles.shape
    cols = columns or min(t, max(1, math.ceil(math.sqrt(t))))
    rows = math.ceil(t / cols)
    th, tw = h * scale, w * scale
    cap_h = 14 if captions else 0
    grid = Image.new("RGB", (cols * (tw + pad) + pad, rows * (th + cap_h + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    for i in range(t):
        r, c = divmod(i, cols)
        x0, y0 = pad + c * (tw + pad), pad + r * (th + cap_h + pad)
        grid.paste(Image.fromarray(tiles[i]).resize((tw, th), Image.NEAREST), (x0, y0))
        if captions:
            draw.text((x0, y0 + th + 1), captions[i][: max(4, tw // 6)], fill="black")
    return grid


def captions_of(result) -> list[str]:
    """`name p=0.99` for class objectives, `name φ=1.23` otherwise."""
    out = []
    for i, name in enumerate(result.names):
        prob = float(result.final_prob[i])
        out.append(f"{name} p={prob:.2f}" if not math.isnan(prob) else f"{name} phi={float(result.final_objective[i]):.2f}")
    return out


def summary_table(result) -> pd.DataFrame:
    """One row per target: final objective, softmax probability, top-1 class, low-frequency share."""
    return pd.DataFrame({
        "target": result.targets,
        "name": result.names,
        "objective": result.objective,
        "layer": result.layer or "",
        "final_objective": result.final_objective.numpy(),
        "final_prob": result.final_prob.numpy(),
        "final_pred": result.final_pred.numpy(),
        "low_freq_share": result.low_freq_share.numpy(),
    })


def history_table(result) -> pd.DataFrame:
    """Tidy (step, target, objective) rows of the per-step objective."""
    steps, t = result.history.shape
    return pd.DataFrame({
        "step": np.repeat(np.arange(steps), t),
        "target": np.tile(np.asarray(result.targets), steps),
        "objective": result.history.numpy().reshape(-1),
    })


def png_names(result) -> list[str]:
    return [f"{result.objective}_{t:04d}_{slug(n)}.png" for t, n in zip(result.targets, result.names)]


def write_outputs(result, outdir: str | Path, scale: int = 1) -> dict[str, Path]:
    """Write `<outdir>/<objective>_<target>_<name>.png` per target, `grid.png`, `history.csv`
    (step, target, objective) and `summary.csv`; return the paths by kind."""
    out = Path(outdir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create featviz output folder {out}: {e}") from e
    tiles = to_uint8(result.images)
    for name, tile in zip(png_names(result), tiles):
        Image.fromarray(tile).save(out / name)
    paths = {"grid": out / "grid.png", "history": out / "history.csv", "summary": out / "summary.csv"}
    image_grid(result.images, captions_of(result), scale=scale).save(paths["grid"])
    history_table(result).to_csv(paths["history"], index=False)
    summary = summary_table(result)
    summary["png"] = png_names(result)
    summary.to_csv(paths["summary"], index=False)
    return paths

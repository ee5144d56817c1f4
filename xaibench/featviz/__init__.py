"""Activation maximization with spatial-pyramid gradient preconditioning (Tao et al. 2017;
docs/methods.md §Pyramid activation maximization): synthesize inputs that maximize class logits, channels or centre units.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from ..models.adapter import ModelAdapter
from .optimize import VizResult, optimize
from .output import write_outputs
from .params import FeatvizParams
from .pyramid import gaussian_pyramid, laplacian_pyramid, laplacian_reconstruct, precondition
from .spectrum import low_frequency_share

__all__ = [
    "FeatvizParams", "VizResult", "visualize", "run_visualize", "optimize", "write_outputs",
    "gaussian_pyramid", "laplacian_pyramid", "laplacian_reconstruct", "precondition", "low_frequency_share",
]


def visualize(model: ModelAdapter, targets: list[int] | tuple[int, ...] = (), objective: str = "class",
              steps: int = 256, *, init_images: Tensor | None = None, **params: Any) -> VizResult:
    """Synthesize one image per target that maximizes `objective` (`class` logit, `channel` mean
    or centre `unit` of a channel at `layer`), optimized in pixel space [0,1] and clipped to it
    (Tao et al. 2017; docs/methods.md §Pyramid activation maximization). `params` are FeatvizParams fields; `init_images`
    ((1 or T,3,H,W) pixels in [0,1]) replaces the noise start, e.g. a class-average image.
    Returns a VizResult: .images (T,3,H,W) pixels, .history (steps,T), .final_prob (T,), …"""
    values = dict(params, targets=list(targets), objective=objective, steps=steps)
    if init_images is not None:
        values.setdefault("init", "image")
    return optimize(model, FeatvizParams.from_dict(values, where="visualize"), init_images=init_images)


def run_visualize(model: ModelAdapter, params: FeatvizParams, outdir: str | Path,
                  init_images: Tensor | None = None) -> VizResult:
    """`visualize` with `params`, then write PNGs, grid.png, history.csv and summary.csv to `outdir`
    (docs/methods.md §Pyramid activation maximization "Outputs"; a run also stores `VizResult.arrays()` in results.h5)."""
    result = optimize(model, params, init_images=init_images)
    write_outputs(result, outdir)
    return result

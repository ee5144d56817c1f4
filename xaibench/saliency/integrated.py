"""Integrated gradients: the path integral of input gradients from a baseline to the image, with
the integration steps of all images batched in `chunk_size` pieces and a completeness check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from ..imageops import check_odd_kernel
from ..memory import ChunkSize
from ..models.adapter import ModelAdapter
from ..registry import param
from ..tensorops import step_chunks, target_scores
from .base import EXPLAINERS, REDUCE_HELP, Reduce
from .baselines import BaselineKind, make_baseline
from .gradient import InputAttribution

Quadrature = Literal["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre"]


def path_quadrature(method: str, steps: int) -> tuple[list[float], list[float]]:
    """(alphas, weights) of the rule integrating over α ∈ [0,1] with `steps` points — the same
    rules (and names) as Captum's `approximation_methods`."""
    n = int(steps)
    if method == "riemann_left":
        return [k / n for k in range(n)], [1 / n] * n
    if method == "riemann_right":
        return [(k + 1) / n for k in range(n)], [1 / n] * n
    if method == "riemann_middle":
        return [(k + 0.5) / n for k in range(n)], [1 / n] * n
    if method == "riemann_trapezoid":
        if n < 2:
            raise ConfigError(f"method riemann_trapezoid needs steps >= 2, got {n}")
        w = [1 / (n - 1)] * n
        w[0] = w[-1] = 0.5 / (n - 1)
        return [k / (n - 1) for k in range(n)], w
    if method == "gausslegendre":
        nodes, w = np.polynomial.legendre.leggauss(n)
        return list(0.5 * (nodes + 1)), list(0.5 * w)
    raise ConfigError(f"unknown method '{method}'. Valid: {', '.join(Quadrature.__args__)}")


@EXPLAINERS.register("integrated_gradients")
@dataclass
class IntegratedGradients(InputAttribution):
    """Integrated gradients (Sundararajan et al., ICML 2017): (x − x') ⊙ ∫₀¹ ∂y_c/∂x(x' + α(x − x')) dα,
    by the quadrature `method` with `steps` points. All (step, image) pairs of the batch go
    through the model in pieces of at most `chunk_size`, whole steps of the batch per call.
    `diagnostics["completeness_error"]` is |Σ attribution − (y_c(x) − y_c(x'))| per image (the
    axiom the integral satisfies exactly)."""

    reduce: Reduce = param("sum", help=REDUCE_HELP)
    steps: int = param(32, help="points of the path quadrature (riemann_trapezoid: >= 2)", ge=1)
    method: Quadrature = param("gausslegendre", help="quadrature rule over the path (Captum's names)")
    baseline: BaselineKind = param("zeros", help="path start: zeros (the dataset mean), black, blur or uniform noise")
    blur_kernel: int = param(51, help="Gaussian kernel of the blur baseline, px (odd)", ge=1)
    blur_sigma: float = param(50.0, help="Gaussian sigma of the blur baseline, px", gt=0)
    seed: int = param(0, help="seed of the uniform baseline")
    chunk_size: ChunkSize = param(64, help="(step, image) pairs per forward+backward; auto: sized from the memory budget",
                                  ge=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_odd_kernel(self.blur_kernel)
        path_quadrature(self.method, self.steps)  # the rule's own needs (riemann_trapezoid: steps >= 2)

    def attribute(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        x = x.detach()
        gen = torch.Generator(device=x.device).manual_seed(self.seed)
        base = make_baseline(model, x, self.baseline, self.blur_kernel, self.blur_sigma, gen)
        return self.attribute_from(model, x, base, target)

    def attribute_from(self, model: ModelAdapter, x: Tensor, base: Tensor, target: Tensor) -> Tensor:
        """The attribution against a given baseline tensor (same shape as x)."""
        alphas, weights = path_quadrature(self.method, self.steps)
        alphas_t = torch.tensor(alphas, device=x.device, dtype=x.dtype)
        weights_t = torch.tensor(weights, device=x.device, dtype=x.dtype)
        target = target.to(x.device)
        b = x.shape[0]
        delta = x - base
        total = torch.zeros_like(x)
        for steps, rows in step_chunks(len(alphas), b, self.chunk_size):
            a = alphas_t[steps].view((-1,) + (1,) * x.dim())
            with torch.enable_grad():  # (step, image) order: x' + α(x − x') in one broadcast op
                xs = torch.addcmul(base[rows], a, delta[rows]).flatten(0, 1).requires_grad_(True)
                scores = target_scores(model(xs), target[rows].repeat(len(a)))
                (grad,) = torch.autograd.grad(scores.sum(), xs)
            # Σ_step w_step · grad_step, as one contraction over the steps
            total[rows] += torch.tensordot(weights_t[steps], grad.reshape(len(a), -1), dims=1).view_as(total[rows])
        attr = delta * total
        with torch.inference_mode():
            ends = target_scores(model(torch.cat([x, base])), torch.cat([target, target]))
        gap = ends[:b] - ends[b:]
        self.diagnostics["completeness_error"] = (attr.flatten(1).sum(1) - gap).abs().detach()
        return attr

"""Reference inputs ("baselines") that path and perturbation explainers compare against:
zeros, black, a blurred copy of the image, or uniform noise; all in model-input space.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ..errors import ConfigError
from ..imageops import gaussian_blur
from ..models.adapter import ModelAdapter

BaselineKind = Literal["zeros", "black", "blur", "uniform"]
BASELINES = ("zeros", "black", "blur", "uniform")


def make_baseline(
    model: ModelAdapter,
    x: Tensor,
    kind: str,
    blur_kernel: int = 51,
    blur_sigma: float = 50.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """A baseline like `x` (model-input space): `zeros` (Captum's default: the dataset mean
    colour after normalization), `black` (pixel value 0), `blur` (Gaussian blur of x, reflect
    padding; Fong & Vedaldi 2017), `uniform` (pixels uniform in [0,1]; Sturmfels et al. 2020)."""
    if kind == "zeros":
        return torch.zeros_like(x)
    if kind == "black":
        return model.normalize(torch.zeros_like(x))
    if kind == "blur":
        return gaussian_blur(x, blur_kernel, blur_sigma)
    if kind == "uniform":
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return model.normalize(u)
    raise ConfigError(f"unknown baseline '{kind}'. Valid: {', '.join(BASELINES)}")

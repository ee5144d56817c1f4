"""Control explainers: maps that know nothing of the model (noise, a centre prior, image edges),
listed like any explainer so a leaderboard can tell which real explainers beat them.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.adapter import ModelAdapter
from ..registry import param
from .base import EXPLAINERS, Explainer


def image_seed(image: Tensor, seed: int) -> int:
    """A seed of one image's content (CRC-32 of its float32 bytes, started from `seed`), so an
    image gets the same noise in any batch, order or run."""
    data = image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return zlib.crc32(data, seed & 0xFFFFFFFF)


@dataclass
class Control(Explainer):
    """An explainer that uses no model output: a floor every real explainer should clear
    (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018, use an edge detector so)."""

    control: ClassVar[bool] = True


@EXPLAINERS.register("random")
@dataclass
class RandomControl(Control):
    """Uniform noise in [0,1) per pixel, seeded per image from `seed` and the image's content."""

    seed: int = param(0, help="noise seed (combined with each image's content)", ge=0)

    def explain(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        maps = [torch.rand((h, w), generator=torch.Generator().manual_seed(image_seed(xi, self.seed))) for xi in x]
        return torch.stack(maps).to(x.device)


@EXPLAINERS.register("center")
@dataclass
class CenterControl(Control):
    """A centred Gaussian prior exp(−r²/2σ²), σ = `sigma` · min(H,W): the same map for every image
    (the centre bias of saliency benchmarks; Judd, Ehinger, Durand, Torralba, ICCV 2009)."""

    sigma: float = param(0.25, help="standard deviation as a fraction of the shorter image side", gt=0)

    def explain(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        ys = torch.arange(h, dtype=torch.float32, device=x.device) - (h - 1) / 2
        xs = torch.arange(w, dtype=torch.float32, device=x.device) - (w - 1) / 2
        r2 = ys[:, None] ** 2 + xs[None, :] ** 2
        s = self.sigma * min(h, w)
        return torch.exp(-r2 / (2 * s * s)).expand(x.shape[0], h, w).clone()


@EXPLAINERS.register("edges")
@dataclass
class EdgesControl(Control):
    """Sobel gradient magnitude (Sobel & Feldman 1968) of the grey image (mean of the pixel-space
    channels), scikit-image's `filters.sobel` exactly: kernels [1,0,−1] ⊗ [1,2,1]/4, border
    pixels mirrored, magnitude √((g_x² + g_y²)/2)."""

    def explain(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        grey = model.denormalize(x).float().mean(1, keepdim=True)
        padded = F.pad(grey, (1, 1, 1, 1), mode="replicate")  # = scipy's 'reflect' for a 1-pixel border
        diff = torch.tensor([1.0, 0.0, -1.0], device=x.device)
        smooth = torch.tensor([0.25, 0.5, 0.25], device=x.device)
        kx = (smooth[:, None] * diff[None, :]).flip(0, 1)[None, None]  # convolution, not correlation
        ky = (diff[:, None] * smooth[None, :]).flip(0, 1)[None, None]
        gx, gy = F.conv2d(padded, kx), F.conv2d(padded, ky)
        return ((gx * gx + gy * gy) / 2).sqrt()[:, 0]

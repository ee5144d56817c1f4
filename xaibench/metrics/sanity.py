"""Sanity check by cascading model parameter randomization (Adebayo et al., NeurIPS 2018): layers
re-initialized from the logits down, maps recomputed and compared with the originals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, LayerError, did_you_mean
from ..models.edits import preserved_state, reinitialize
from ..registry import param
from ..tensorops import minmax
from .base import METRICS, ImageMetric, MetricResult, clean_maps

Similarity = Literal["spearman_abs", "spearman", "ssim", "hog_pearson"]
SIMILARITIES = ("spearman_abs", "spearman", "ssim", "hog_pearson")


def default_stages(module: nn.Module) -> list[str]:
    """The top-level children that hold parameters or buffers, from the logits down."""
    names = [n for n, m in module.named_children() if any(True for _ in m.parameters()) or any(True for _ in m.buffers())]
    return names[::-1]


def average_ranks(a: Tensor) -> Tensor:
    """(B,N) ranks 0..N-1 along dim 1, tied values sharing their average rank (as scipy's rankdata)."""
    b, n = a.shape
    sorted_vals, order = a.sort(dim=1, stable=True)
    new_group = torch.ones_like(sorted_vals, dtype=torch.bool)
    new_group[:, 1:] = sorted_vals[:, 1:] != sorted_vals[:, :-1]
    group = new_group.long().cumsum(1) - 1 + torch.arange(b, device=a.device)[:, None] * n  # unique per row
    pos = torch.arange(n, device=a.device, dtype=torch.float64).expand(b, n).reshape(-1)
    flat_group = group.reshape(-1)
    first = torch.full((b * n,), float(n), dtype=torch.float64, device=a.device).scatter_reduce(0, flat_group, pos, "amin")
    last = torch.full((b * n,), -1.0, dtype=torch.float64, device=a.device).scatter_reduce(0, flat_group, pos, "amax")
    avg_sorted = ((first + last) / 2)[flat_group].view(b, n)
    return torch.empty_like(avg_sorted).scatter_(1, order, avg_sorted)


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """(B,) Pearson correlation of the rows; 1 when both rows are constant, 0 when only one is."""
    a = a.double() - a.double().mean(1, keepdim=True)
    b = b.double() - b.double().mean(1, keepdim=True)
    na, nb = a.norm(dim=1), b.norm(dim=1)
    r = (a * b).sum(1) / (na * nb).clamp_min(1e-300)
    both_flat = (na == 0) & (nb == 0)
    return torch.where(both_flat, 1.0, torch.where((na == 0) | (nb == 0), 0.0, r))


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """(B,) Spearman rank correlation of flattened maps (average ranks for ties)."""
    return pearson(average_ranks(a.flatten(1).double()), average_ranks(b.flatten(1).double()))


def ssim(a: Tensor, b: Tensor, data_range: float = 1.0, win_size: int = 7) -> Tensor:
    """(B,) mean SSIM (Wang et al. 2004) of (B,H,W) maps, batched; the defaults of
    `skimage.metrics.structural_similarity` (7×7 uniform window, sample covariance, K1 0.01,
    K2 0.03, mean over the region not touched by the border)."""
    a, b = a.double()[:, None], b.double()[:, None]
    win = min(win_size, a.shape[-1], a.shape[-2])
    win -= 1 - win % 2  # odd
    np_ = win * win
    cov_norm = np_ / (np_ - 1)
    mean = lambda t: F.avg_pool2d(t, win, stride=1)  # noqa: E731  (valid region = skimage's crop)
    ux, uy = mean(a), mean(b)
    vx = cov_norm * (mean(a * a) - ux * ux)
    vy = cov_norm * (mean(b * b) - uy * uy)
    vxy = cov_norm * (mean(a * b) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3))


def hog_features(maps: Tensor, pixels_per_cell: int) -> Tensor:
    """(B,F) HOG descriptors (Dalal & Triggs 2005, `skimage.feature.hog`) of (B,H,W) maps in [0,1].
    skimage has no batch API: one call per map, on CPU."""
    from skimage.feature import hog

    ppc = max(1, min(pixels_per_cell, maps.shape[-1] // 2, maps.shape[-2] // 2))
    feats = [hog(m, pixels_per_cell=(ppc, ppc), cells_per_block=(2, 2)) for m in maps.double().cpu().numpy()]
    return torch.from_numpy(np.stack(feats))


@METRICS.register("randomization")
@dataclass
class Randomization(ImageMetric):
    """Cascading model parameter randomization (Adebayo et al., NeurIPS 2018), docs/metrics.md "Sanity".

    Stage k re-initializes `stages[0..k]` (default: each top-level block of `model.module` that holds
    parameters, from the logits down), re-explains the batch and compares with the original maps by
    Spearman of |S| (`spearman_abs`) and of S (`spearman`), SSIM and the Pearson correlation of HOG
    features of the min-max normalized |S|. Curve (B, stages) of `similarity`, its mean as the value
    (lower is better: the explanation depends on the weights), the other similarities' means as
    extras. The model is restored bit for bit afterwards, also on error.
    """

    higher_is_better: ClassVar[bool] = False
    needs: ClassVar[frozenset[str]] = frozenset({"explain"})
    similarity: Similarity = param("spearman_abs", help="the similarity of the value and curve: spearman_abs, "
                                                        "spearman, ssim or hog_pearson")
    stages: list[str] | None = param(None, help="modules re-initialized in cascade, logits first; null: every "
                                                "top-level block with parameters")
    hog_pixels_per_cell: int = param(8, help="HOG cell side, px (capped at half the map)", ge=1)
    seed: int = param(0, help="seed of the re-initialization")

    def __post_init__(self) -> None:
        super().__post_init__()

    def stage_names(self, module: nn.Module) -> list[str]:
        names = list(self.stages) if self.stages else default_stages(module)
        modules = dict(module.named_modules())
        for n in names:
            if n not in modules or not n:
                raise LayerError(f"randomization stage '{n}' is not a module of the model.{did_you_mean(n, modules)}")
        return names

    def similarities(self, original: Tensor, other: Tensor) -> dict[str, Tensor]:
        a_abs, b_abs = minmax(original.abs()), minmax(other.abs())
        hog_a = hog_features(a_abs, self.hog_pixels_per_cell)
        hog_b = hog_features(b_abs, self.hog_pixels_per_cell)
        return {
            "spearman_abs": spearman(original.abs(), other.abs()),
            "spearman": spearman(original, other),
            "ssim": ssim(a_abs, b_abs).cpu(),
            "hog_pearson": pearson(hog_a, hog_b),
        }

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        if explain is None:
            raise ConfigError("randomization needs the explainer: call it with explain=callable(model, x, target)")
        original = clean_maps(maps).detach()
        names = self.stage_names(model.module)
        modules = dict(model.module.named_modules())
        per_stage: list[dict[str, Tensor]] = []
        with preserved_state(model.module):
            for k, name in enumerate(names):
                reinitialize(modules[name], self.seed + k)
                again = clean_maps(explain(model, x, target)).detach().to(original.device)
                per_stage.append({s: v.to(original.device).float() for s, v in self.similarities(original, again).items()})
        curves = {s: torch.stack([st[s] for st in per_stage], dim=1) for s in SIMILARITIES}
        curve = curves.pop(self.similarity)
        return MetricResult(values=curve.mean(1), curves=curve, extras={s: c.mean(1) for s, c in curves.items()})

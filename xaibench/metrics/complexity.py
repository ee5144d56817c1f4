"""Complexity of a map on its own (no model): sparseness as the Gini index of |S| and complexity
as the entropy of |S| normalized to a distribution (Chalasani et al. 2020; Bhatt et al. 2020).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import METRICS, ImageMetric, MetricResult, clean_maps


@METRICS.register("sparseness")
@dataclass
class Sparseness(ImageMetric):
    """Sparseness (Chalasani et al., ICML 2020): the Gini index of |S| over pixels,
    Σ_i (2i − n − 1)·a_(i) / (n·Σ a) with a sorted ascending; 0 for a uniform (or all-zero) map,
    → 1 when all mass is on one pixel. Higher is sparser."""

    higher_is_better: ClassVar[bool] = True

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        a = clean_maps(maps).abs().flatten(1).double().sort(dim=1).values
        n = a.shape[1]
        i = torch.arange(1, n + 1, device=a.device, dtype=a.dtype)
        total = a.sum(1)
        gini = ((2 * i - n - 1) * a).sum(1) / (n * total).clamp_min(1e-300)
        return MetricResult(values=torch.where(total > 0, gini, 0.0).float())


@METRICS.register("complexity")
@dataclass
class Complexity(ImageMetric):
    """Complexity (Bhatt et al., IJCAI 2020; docs/metrics.md "Complexity"): the entropy −Σ p log p of
    p = |S|/Σ|S| (natural log, 0·log 0 = 0); an all-zero map counts as uniform, log(H·W).
    Lower is simpler."""

    higher_is_better: ClassVar[bool] = False

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        a = clean_maps(maps).abs().flatten(1).double()
        total = a.sum(1, keepdim=True)
        p = a / total.clamp_min(1e-300)
        entropy = -torch.special.xlogy(p, p).sum(1)
        return MetricResult(values=torch.where(total[:, 0] > 0, entropy, math.log(a.shape[1])).float())

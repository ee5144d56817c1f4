"""Localization against a ground-truth mask by ranking: the ROC AUC of the map as a pixel classifier of
the mask (Quantus `AUC`) and the share of the top-k pixels inside the mask (Quantus `TopKIntersection`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..errors import ConfigError
from ..registry import param
from .base import METRICS, ImageMetric, MetricResult, clean_maps
from .localization import ground_truth
from .ordering import saliency_rank, tie_seeds
from .sanity import average_ranks


@METRICS.register("mask_auc")
@dataclass
class MaskAUC(ImageMetric):
    """Area under the ROC curve of S as a per-pixel score for the mask (Fawcett, "An introduction to ROC
    analysis", Pattern Recognit. Lett. 2006; Quantus `AUC`), docs/metrics.md "mask_auc": the
    Mann-Whitney form (Σ ranks of mask pixels − P(P+1)/2)/(P·N), tied values sharing their average rank
    (so a constant map scores 0.5); NaN when the mask covers the whole image. Higher is better."""

    higher_is_better: ClassVar[bool] = True
    needs: ClassVar[frozenset[str]] = frozenset({"mask"})

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        s = clean_maps(maps)  # float32: ranked as given (a float64 sort costs twice as much)
        gt = ground_truth(annotation, tuple(s.shape), s.device, "mask").flatten(1)
        ranks = average_ranks(s.flatten(1)) + 1  # 1-based, float64
        pos = gt.sum(1).double()
        neg = gt.shape[1] - pos
        u = (ranks * gt).sum(1) - pos * (pos + 1) / 2
        auc = torch.where((pos > 0) & (neg > 0), u / (pos * neg).clamp_min(1), torch.nan)
        return MetricResult(values=auc.float())


@METRICS.register("top_k_intersection")
@dataclass
class TopKIntersection(ImageMetric):
    """Top-k intersection (Theiner, Müller-Budack, Ewerth, "Interpretable Semantic Photo Geolocation",
    WACV 2022; Quantus `TopKIntersection`), docs/metrics.md "top_k_intersection": the share of the k
    most salient pixels (ties broken by the seeded permutation) that lie in the mask; with
    `concept_influence` multiplied by H·W/|mask|. Higher is better."""

    higher_is_better: ClassVar[bool] = True
    needs: ClassVar[frozenset[str]] = frozenset({"mask"})
    k: int = param(1000, help="number of top pixels compared with the mask", ge=1)
    concept_influence: bool = param(False, help="divide by the mask's share of the image (Quantus' concept influence)")
    seed: int = param(0, help="seed of the tie-breaking pixel order")

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        s = clean_maps(maps)
        b, h, w = s.shape
        if self.k > h * w:
            raise ConfigError(f"top_k_intersection: k = {self.k} is more than the {h * w} pixels of a {h}x{w} map")
        gt = ground_truth(annotation, (b, h, w), s.device, "mask").flatten(1)
        top = saliency_rank(s, tie_seeds(self.seed, seeds, b)) < self.k
        value = (top & gt).sum(1).double() / self.k
        if self.concept_influence:
            value = value * (h * w) / gt.sum(1).double().clamp_min(1)
        return MetricResult(values=value.float())

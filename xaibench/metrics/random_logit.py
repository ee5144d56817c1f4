"""Random-logit test (Sixt, Granz, Landgraf, ICML 2020): the map of the target class against the map of
a randomly drawn other class; a class-sensitive explainer gives dissimilar maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError, DataError
from ..registry import param
from .base import METRICS, ImageMetric, MetricResult, clean_maps
from .draws import image_generators
from .sanity import ssim


def normalise_by_max(maps: Tensor) -> Tensor:
    """Each map divided by its largest |value| (Quantus' `normalise_by_max`, per image); all-zero maps unchanged."""
    peak = maps.flatten(1).abs().amax(1).view(-1, *([1] * (maps.dim() - 1)))
    return torch.where(peak > 0, maps / torch.where(peak > 0, peak, torch.ones_like(peak)), maps)


def ssim_flat(a: Tensor, b: Tensor, win: int = 7) -> Tensor:
    """(B,) SSIM (Wang et al., IEEE TIP 2004) of the row-major flattened maps as 1-D signals, skimage's
    defaults (uniform window 7, sample covariance, K1 0.01, K2 0.03, border cropped) with data range
    max − min over both maps: Quantus' `ssim` similarity, batched."""
    a, b = a.double().flatten(1), b.double().flatten(1)
    both = torch.cat([a, b], 1)
    data_range = (both.amax(1) - both.amin(1)).abs()[:, None]
    mean = lambda t: F.avg_pool1d(t[:, None], win, stride=1)[:, 0]  # noqa: E731  (valid = skimage's crop)
    cov_norm = win / (win - 1)
    ux, uy = mean(a), mean(b)
    vx, vy = cov_norm * (mean(a * a) - ux * ux), cov_norm * (mean(b * b) - uy * uy)
    vxy = cov_norm * (mean(a * b) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(1)


def off_target_classes(generators: list[torch.Generator], target: Tensor, num_classes: int) -> Tensor:
    """(B,) a class ≠ target per image, uniform over the other classes: j = randint(0, K−1) from the
    image's generator, the j-th class once the target is left out (Quantus RandomLogit's draw)."""
    j = torch.stack([torch.randint(0, num_classes - 1, (), generator=g) for g in generators]).to(target.device)
    return j + (j >= target).long()


@METRICS.register("random_logit")
@dataclass
class RandomLogit(ImageMetric):
    """Random-logit test (Sixt, Granz, Landgraf, "When Explanations Lie: Why Many Modified BP
    Attributions Fail", ICML 2020; Quantus `RandomLogit`), docs/metrics.md "random_logit": the explainer
    is run again for a class drawn uniformly among the others; value = similarity of the two maps,
    each divided by its max |S|: SSIM of the 2-D maps (`ssim`, data range of both) or of the flattened
    maps (`ssim_flat`, Quantus' default); two equal constant maps score 1. Lower is better (the map depends on the class)."""

    higher_is_better: ClassVar[bool] = False
    needs: ClassVar[frozenset[str]] = frozenset({"explain"})
    similarity: Literal["ssim", "ssim_flat"] = param("ssim", help="ssim: SSIM of the 2-D maps; ssim_flat: SSIM "
                                                                  "of the flattened maps (Quantus)")
    seed: int = param(0, help="seed of the random class (mixed with each image's seed)")

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        if explain is None:
            raise ConfigError("random_logit needs the explainer: call it with explain=callable(model, x, target)")
        k = model.num_classes
        if k < 2:
            raise DataError(f"random_logit needs at least 2 classes; the model has {k}")
        target = target.to(x.device).long()
        off = off_target_classes(image_generators(self.seed, seeds, x.shape[0], "class"), target, k)
        a = normalise_by_max(clean_maps(maps).to(x.device).double())
        b = normalise_by_max(clean_maps(explain(model, x, off)).detach().to(x.device).double())
        both = torch.cat([a.flatten(1), b.flatten(1)], 1)
        data_range = both.amax(1) - both.amin(1)
        if self.similarity == "ssim_flat":
            value = ssim_flat(a, b)
        else:
            value = ssim(a, b, data_range=data_range.view(-1, 1, 1, 1))
        value = torch.where(data_range > 0, value, 1.0)  # two equal constant maps: identical
        return MetricResult(values=value.float(), extras={"class": off.float()})

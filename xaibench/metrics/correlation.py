"""Faithfulness correlation (Bhatt et al., IJCAI 2020): the correlation, over random feature subsets,
between the map's sum on the subset and the drop of the class score when the subset is removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from ..errors import ConfigError
from ..memory import ChunkSize
from ..registry import param
from ..tensorops import chunks, class_scores
from .base import METRICS, ImageMetric, MetricResult, clean_maps
from .draws import image_generators


def row_pearson(a: Tensor, b: Tensor) -> Tensor:
    """(B,) Pearson correlation of the rows of (B,N) `a` and `b` in float64; 0 when either row is
    constant (no correlation can be measured, so a flat map earns nothing)."""
    a = a.double() - a.double().mean(1, keepdim=True)
    b = b.double() - b.double().mean(1, keepdim=True)
    na, nb = a.norm(dim=1), b.norm(dim=1)
    r = (a * b).sum(1) / (na * nb).clamp_min(1e-300)
    return torch.where((na == 0) | (nb == 0), torch.zeros_like(r), r)


def first_distinct(draws: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Per row of (R, L) `draws`: the first `size` distinct values in draw order (R, size), and
    whether the row had that many (R,) bool."""
    ordered, order = draws.sort(dim=1, stable=True)  # equal values keep their draw order
    first = torch.ones_like(draws, dtype=torch.bool)
    first[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    new = torch.empty_like(first).scatter_(1, order, first)  # back in draw order: not seen earlier
    enough = new.sum(1) >= size
    keep = new & (new.cumsum(1) <= size)
    out = torch.zeros(draws.shape[0], size, dtype=draws.dtype)
    out[enough] = draws[enough][keep[enough]].view(-1, size)
    return out, enough


def random_subsets(generators: list[torch.Generator], runs: int, n: int, size: int) -> Tensor:
    """(B, runs, size) int64: for each image and run, `size` distinct indices of range(n), uniform
    without replacement — the first `size` distinct values of the run's stream of uniform draws
    (the image's generator fills (runs, size + size // 8 + 32) blocks, row r = run r, and draws
    further blocks while a run lacks distinct values). Exact and cheap: no (runs, n) keys."""
    block = size + size // 8 + 32
    out = []
    for g in generators:
        draws = torch.randint(n, (runs, block), generator=g)
        picked, enough = first_distinct(draws, size)
        while not bool(enough.all()):
            draws = torch.cat([draws, torch.randint(n, (runs, block), generator=g)], dim=1)
            picked, enough = first_distinct(draws, size)
        out.append(picked)
    return torch.stack(out)


@METRICS.register("faithfulness_correlation")
@dataclass
class FaithfulnessCorrelation(ImageMetric):
    """Faithfulness correlation (Bhatt, Weller, Moura, IJCAI 2020), docs/metrics.md "Faithfulness
    correlation". For `runs` random subsets of `subset_size` features (input elements (c,y,x) with the
    map broadcast over channels, Quantus' convention; or whole pixels with `unit: pixel`), replaced by
    the image's minimum ("black"): Pearson correlation between Σ S over the subset and
    f_c(x) − f_c(x_subset removed); higher is better. Quantus `FaithfulnessCorrelation`."""

    higher_is_better: ClassVar[bool] = True
    runs: int = param(100, help="random subsets per image", ge=2)
    subset_size: int = param(224, help="features removed in each subset", ge=1)
    unit: Literal["element", "pixel"] = param("element", help="a feature is one input element (c,y,x), as in "
                                                              "Quantus, or one pixel with all its channels")
    score: Literal["logit", "softmax"] = param("logit", help="class score f_c: logit (Quantus' default) or softmax")
    chunk_size: ChunkSize = param(64, help="perturbed inputs per model call; auto: sized from the memory budget",
                                  ge=1)
    seed: int = param(0, help="seed of the random subsets (mixed with each image's seed)")

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        b, c, h, w = x.shape
        n = h * w * (c if self.unit == "element" else 1)
        if self.subset_size >= n:
            raise ConfigError(f"faithfulness_correlation: subset_size {self.subset_size} must be below the "
                              f"{n} features of a {c}x{h}x{w} input ({self.unit}s)")
        gens = image_generators(self.seed, seeds, b, "subsets")
        idx = random_subsets(gens, self.runs, n, self.subset_size).to(x.device)  # (B,R,K)
        s_flat = clean_maps(maps).to(x.device).double().flatten(1)  # (B,HW)
        att = s_flat.gather(1, (idx % (h * w)).flatten(1)).view(b, self.runs, -1).sum(2)  # element c·HW+p → p
        black = x.amin(dim=(1, 2, 3))  # Quantus' "black": the image's minimum
        target = target.to(x.device).long()
        kind = model.score_kind(self.score)
        drop = torch.empty(b, self.runs, dtype=torch.float64, device=x.device)
        jobs = torch.cartesian_prod(torch.arange(b, device=x.device), torch.arange(self.runs, device=x.device))
        with torch.inference_mode(), model.fused_inference():  # BatchNorm-folded copy for the many forwards
            f_x = torch.cat([class_scores(model(x[sl]), target[sl], kind) for sl in chunks(b, self.chunk_size)])
            for sl in chunks(len(jobs), self.chunk_size):
                img, run = jobs[sl].unbind(1)
                removed = torch.zeros(len(img), n, dtype=torch.bool, device=x.device)
                removed.scatter_(1, idx[img, run], True)
                removed = removed.view(-1, c, h, w) if self.unit == "element" else removed.view(-1, 1, h, w)
                moved = torch.where(removed, black[img, None, None, None], x[img])
                drop[img, run] = (f_x[img] - class_scores(model(moved), target[img], kind)).double()
        return MetricResult(values=row_pearson(att, drop).float())

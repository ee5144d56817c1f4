"""ROAD (Rong et al., ICML 2022): remove the most (MoRF) or least (LeRF) relevant p % of pixels,
fill them by noisy linear imputation (one sparse linear system per batch chunk), record P_c.
"""

from __future__ import annotations

import math
import weakref
import zlib
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from ..memory import ChunkSize
from ..models.fused import state_key
from ..registry import param
from ..tensorops import class_scores
from .base import METRICS, ImageMetric, MetricResult, clean_maps
from .ordering import saliency_rank, tie_seeds

# (dy, dx) → weight of the 8 neighbours (the paper's "noisy linear imputation", road_evaluation's table)
NEIGHBOUR_WEIGHTS = (
    ((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12),
    ((0, -1), 1 / 6), ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6),
)
PERCENTAGES = (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0)
# the accuracy form's percentages: the paper's figures and Quantus ROAD's default, list(range(1, 100, 2))
ACCURACY_PERCENTAGES = tuple(float(p) for p in range(1, 100, 2))
# Peak bytes of the imputation's SuperLU solve per unknown per log2(unknowns): A has 9 nonzeros
# a row, its LU fills in to ~n·log n. Measured (peak RSS) 145–170 for contiguous holes of 30–90 %
# in 128²–256² images; scattered holes need less
LU_BYTES = 170


def linear_imputation(x: Tensor, remove: Tensor) -> Tensor:
    """Fill the `remove`d pixels of (N,C,H,W) images so that each equals the weighted mean of its
    valid 8-neighbours (Rong et al. 2022, ROAD; weights 1/6 edge, 1/12 diagonal, renormalized at the
    image border). All N images form one block-diagonal sparse system solved by one `spsolve`
    for every channel at once; no per-pixel Python loop."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    n, c, h, w = x.shape
    hw = h * w
    values = x.detach().permute(0, 2, 3, 1).reshape(n * hw, c).double().cpu().numpy()
    gid = np.flatnonzero(remove.reshape(-1).cpu().numpy())  # global pixel ids (image·HW + pixel)
    if gid.size == 0:
        return x.clone()
    nv = gid.size
    var_of = np.full(n * hw, -1, dtype=np.int64)
    var_of[gid] = np.arange(nv)
    img, pix = np.divmod(gid, hw)
    py, px = np.divmod(pix, w)
    rows, cols, vals = [], [], []
    rhs = np.zeros((nv, c))
    weight_sum = np.zeros(nv)
    ids = np.arange(nv)
    for (dy, dx), wt in NEIGHBOUR_WEIGHTS:  # 8 fixed offsets, each vectorized over all pixels
        ny, nx = py + dy, px + dx
        valid = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        nb = img[valid] * hw + ny[valid] * w + nx[valid]
        var = var_of[nb]
        known = var < 0
        rhs_ids = ids[valid][known]
        np.subtract.at(rhs, rhs_ids, wt * values[nb[known]])
        rows.append(ids[valid][~known])
        cols.append(var[~known])
        vals.append(np.full((~known).sum(), wt))
        weight_sum[valid] += wt
    rows.append(ids)
    cols.append(ids)
    vals.append(-weight_sum)
    a = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(nv, nv)).tocsc()
    solution = np.asarray(spsolve(a, rhs)).reshape(nv, c)
    out = values.copy()
    out[gid] = solution
    out_t = torch.from_numpy(out).to(device=x.device, dtype=x.dtype)
    return out_t.reshape(n, h, w, c).permute(0, 3, 1, 2).contiguous()


def imputation_bytes(shape: tuple[int, ...], fraction: float) -> int:
    """Peak memory of `linear_imputation` of one (C,H,W) image with `fraction` of its pixels
    removed: the sparse LU of its system plus the image's float64 working copies."""
    c, h, w = shape
    n = max(2, int(h * w * fraction))
    return int(LU_BYTES * n * math.log2(n)) + 4 * 8 * c * h * w


def noisy_linear_imputation(x: Tensor, remove: Tensor, noise: float, seeds: list[int]) -> Tensor:
    """`linear_imputation` plus `noise`·N(0,1) on the imputed pixels only (ROAD's NoisyLinearImputer);
    image n's (C,H,W) draw comes from a generator seeded with `seeds[n]` (CPU), whatever its batch."""
    out = linear_imputation(x, remove)
    if noise > 0:
        eps = torch.stack([torch.randn(out.shape[1:], generator=torch.Generator().manual_seed(int(s)), dtype=out.dtype)
                           for s in seeds]).to(out.device)
        out = torch.where(remove[:, None].to(out.device), out + noise * eps, out)
    return out


def noise_seeds(per_image: list[int], orders: list[str], percentages: list[float]) -> list[int]:
    """The imputation-noise seed of each (image, order, p) job: crc32(f"{image seed}:{order}:{p}"),
    so a job's noise depends neither on the batch nor on `chunk_size` (docs/metrics.md "road_morf")."""
    return [zlib.crc32(f"{s}:{o}:{float(p)}".encode()) for s, o, p in zip(per_image, orders, percentages, strict=True)]


class LastCurves:
    """The curves of the last batch ROAD scored, per order, with what they were computed from: when
    road_morf, road_lerf and road_combined score the same maps of the same images with the same
    settings, each (image, order, p) job is imputed and scored once (the same jobs and noise seeds, so
    the reuse is exact). Only one batch is held; any difference in inputs, settings or the model's
    parameters (`state_key`) starts afresh."""

    def __init__(self) -> None:
        self.inputs: tuple | None = None
        self.curves: dict[str, Tensor] = {}

    def clear(self) -> None:
        self.inputs, self.curves = None, {}

    def lookup(self, model, x: Tensor, maps: Tensor, target: Tensor, seeds: Tensor | None, settings: tuple) -> dict:
        """The cached {order: curve} for these inputs (resetting the cache when they differ)."""
        key = state_key(model)  # once per call (it reads every parameter)
        same = self.inputs is not None and self.inputs[0]() is model and self.inputs[-1] == settings and all(
            (a is None and b is None) or (a is not None and b is not None and a.shape == b.shape and torch.equal(a, b))
            for a, b in zip(self.inputs[1:5], (x, maps, target, seeds), strict=True)
        ) and self.inputs[5] == key
        if not same:
            self.inputs = (weakref.ref(model), x, maps, target, seeds, key, settings)
            self.curves = {}
        return self.curves


LAST_CURVES = LastCurves()


@dataclass
class ROADBase(ImageMetric):
    """ROAD (Rong et al., ICML 2022), docs/metrics.md "ROAD". For each p in `percentages` the top (MoRF)
    or bottom (LeRF) p % of pixels by S are imputed in model-input space; the curve is P_c per p (or,
    `score: accuracy`, whether the top-1 prediction is still the target, the paper's accuracy form)
    and the score its mean. (image, p) jobs are imputed and scored in `chunk_size` pieces."""

    orders: ClassVar[tuple[str, ...]] = ("morf",)
    percentages: list[float] | None = param(None, help="percent of the pixels imputed at each curve point; null: "
                                            "10, 20, …, 90 (accuracy: 1, 3, …, 99)", gt=0, lt=100)
    noise: float = param(0.01, help="std of the noise added to imputed pixels, model-input units", ge=0)
    score: Literal["softmax", "logit", "accuracy"] = param("softmax", help="on the curve: the class probability "
                                                           "(softmax), its logit, or accuracy (1 when the top-1 "
                                                           "prediction is still the target, the paper's figures)")
    chunk_size: ChunkSize = param(16, help="(image, percentage) jobs imputed and scored at a time; auto: sized from "
                                           "the memory budget", ge=1)
    seed: int = param(0, help="seed of the tie-breaking pixel order and the imputation noise")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.percentages is not None and not self.percentages:
            raise ConfigError("percentages must list at least one value in (0, 100)")

    @property
    def curve_percentages(self) -> list[float]:
        """The given percentages, or the form's default (probability 10…90, accuracy 1…99 step 2)."""
        if self.percentages is not None:
            return [float(p) for p in self.percentages]
        return list(ACCURACY_PERCENTAGES if self.score == "accuracy" else PERCENTAGES)

    def resolved_protocol(self) -> dict:
        return {**super().resolved_protocol(), "percentages": self.curve_percentages}

    def chunk_item_bytes(self, model, shape: tuple[int, ...]) -> int:
        """`chunk_size: auto` (memory.resolve_params): one job's imputation, at the largest p."""
        return imputation_bytes(shape, max(self.curve_percentages) / 100)

    def job_scores(self, model, imputed: Tensor, target: Tensor) -> Tensor:
        """The curve value of each imputed image: the class score, or 1.0/0.0 for `accuracy`."""
        with torch.inference_mode():
            logits = model(imputed)
        if self.score == "accuracy":
            return (logits.argmax(dim=1) == target).float()
        return class_scores(logits, target, model.score_kind(self.score))

    def curves(self, model, x: Tensor, maps: Tensor, target: Tensor, seeds: Tensor | None = None) -> dict[str, Tensor]:
        """{order: (B,P) class scores after removing p % of pixels in that order}; orders already
        scored on the same inputs by a sibling ROAD metric are taken from `LAST_CURVES`."""
        settings = (self.curve_percentages, self.noise, self.score, self.seed)
        cached = LAST_CURVES.lookup(model, x, maps, target, seeds, settings)
        todo = [o for o in self.orders if o not in cached]
        if todo:
            cached.update(self.score_orders(model, x, maps, target, seeds, todo))
        return {o: cached[o] for o in self.orders}

    def score_orders(self, model, x: Tensor, maps: Tensor, target: Tensor, seeds: Tensor | None,
                     orders: list[str]) -> dict[str, Tensor]:
        """{order: (B,P) curve} for each of `orders`, imputed and scored in `chunk_size` jobs."""
        b, c, h, w = x.shape
        per_image = tie_seeds(self.seed, seeds, b)
        rank = saliency_rank(clean_maps(maps).to(x.device), per_image)  # 0 = most relevant
        percentages = self.curve_percentages
        k = torch.tensor([int(h * w * p / 100) for p in percentages], device=x.device)
        jobs = [(o, i, j) for o in range(len(orders)) for i in range(b) for j in range(len(k))]
        jobs_t = torch.tensor(jobs, device=x.device).view(-1, 3)
        out = torch.empty(len(orders), b, len(k), device=x.device)
        target = target.to(x.device).long()
        for start in range(0, len(jobs), self.chunk_size):
            o, i, j = jobs_t[start : start + self.chunk_size].unbind(1)
            lerf = torch.tensor([orders[v] == "lerf" for v in o.tolist()], device=x.device)
            r = rank[i]
            remove = torch.where(lerf[:, None], r >= h * w - k[j, None], r < k[j, None]).view(-1, h, w)
            job_seeds = noise_seeds(per_image[i.cpu()].tolist(), [orders[v] for v in o.tolist()],
                                    [percentages[v] for v in j.tolist()])
            imputed = noisy_linear_imputation(x[i], remove, self.noise, job_seeds)
            out[o, i, j] = self.job_scores(model, imputed, target[i])
        return {name: out[n] for n, name in enumerate(orders)}

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        """A single-order ROAD score: the mean of its curve (RoadCombined combines two orders)."""
        (order,) = self.orders
        curve = self.curves(model, x, maps, target, seeds)[order]
        return MetricResult(values=curve.mean(1), curves=curve)


@METRICS.register("road_morf")
@dataclass
class RoadMoRF(ROADBase):
    """ROAD MoRF (Rong et al., ICML 2022): mean P_c after imputing the most relevant p %; lower is better."""

    orders: ClassVar[tuple[str, ...]] = ("morf",)
    higher_is_better: ClassVar[bool] = False


@METRICS.register("road_lerf")
@dataclass
class RoadLeRF(ROADBase):
    """ROAD LeRF (Rong et al., ICML 2022): mean P_c after imputing the least relevant p %; higher is better."""

    orders: ClassVar[tuple[str, ...]] = ("lerf",)
    higher_is_better: ClassVar[bool] = True


@METRICS.register("road_combined")
@dataclass
class RoadCombined(ROADBase):
    """ROAD combined (Rong et al., ICML 2022): mean over p of (LeRF − MoRF)/2, the curve per p;
    extras `morf` and `lerf`; higher is better."""

    orders: ClassVar[tuple[str, ...]] = ("morf", "lerf")
    higher_is_better: ClassVar[bool] = True
    extra_directions: ClassVar[dict[str, bool]] = {"morf": False, "lerf": True}

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        cur = self.curves(model, x, maps, target, seeds)
        curve = (cur["lerf"] - cur["morf"]) / 2
        return MetricResult(values=curve.mean(1), curves=curve,
                            extras={"morf": cur["morf"].mean(1), "lerf": cur["lerf"].mean(1)})

"""Region perturbation curves: AOPC over square patches, MoRF and LeRF (Samek et al. 2017), and
IROF over SLIC superpixels (Rieger & Hansen 2020); every (image, step) input runs in batched forwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import Tensor

from ..memory import ChunkSize
from ..registry import param
from ..tensorops import chunks, class_scores
from .base import METRICS, ImageMetric, MetricResult, clean_maps
from .ordering import saliency_rank, tie_seeds

Baseline = Literal["black", "mean"]


def substrate_value(x: Tensor, baseline: str) -> Tensor:
    """(B,) the value removed features take: the image's minimum over channels and pixels (`black`,
    Quantus') or its mean (`mean`), model-input space."""
    return x.amin(dim=(1, 2, 3)) if baseline == "black" else x.mean(dim=(1, 2, 3))


def perturbation_curve(model, x: Tensor, target: Tensor, rank: Tensor, img: Tensor, steps: Tensor, fill: Tensor,
                       kind: str, chunk_size: int) -> tuple[Tensor, Tensor]:
    """Scores of x (B,) and of every job (J,): job j is image `img[j]` with every pixel whose region
    rank (`rank` (B,H·W), 0 = removed first) is below `steps[j]` set to `fill[img[j]]`."""
    b, c, h, w = x.shape
    target = target.to(x.device).long()
    out = torch.empty(len(img), dtype=torch.float32, device=x.device)
    with torch.inference_mode(), model.fused_inference():  # BatchNorm-folded copy for the many forwards
        f_x = torch.cat([class_scores(model(x[sl]), target[sl], kind) for sl in chunks(b, chunk_size)])
        for sl in chunks(len(img), chunk_size):
            i = img[sl]
            removed = (rank[i] < steps[sl, None]).view(-1, 1, h, w)
            out[sl] = class_scores(model(torch.where(removed, fill[i, None, None, None], x[i])), target[i], kind)
    return f_x, out


@dataclass
class RegionPerturbation(ImageMetric):
    """Region perturbation (Samek, Binder, Montavon, Lapuschkin, Müller, IEEE TNNLS 28(11), 2017),
    docs/metrics.md "Region perturbation": the image is padded to a multiple of `patch_size` as Quantus
    does (centred), cut into patch_size² patches ordered by their sum of S (`order`), and the first k
    = 1…`regions` patches are replaced by `baseline`. Curve c_k = f_c(x) − f_c(x_k) (Quantus
    `RegionPerturbation`), value AOPC = Σ_k c_k / (regions + 1) (the k = 0 term is 0)."""

    order: ClassVar[str] = "morf"
    patch_size: int = param(8, help="side of the square regions, px", ge=1)
    regions: int = param(100, help="regions removed, one curve point each (capped at the number of patches)", ge=1)
    baseline: Baseline = param("black", help="value of removed regions: black (image minimum) or mean (image mean)")
    score: Literal["softmax", "logit"] = param("softmax", help="class score f_c: softmax (Quantus' default) or logit")
    chunk_size: ChunkSize = param(64, help="perturbed inputs per model call; auto: sized from the memory budget",
                                  ge=1)
    seed: int = param(0, help="seed of the tie-breaking region order")

    def region_ids(self, h: int, w: int, device) -> tuple[Tensor, int, int]:
        """(H·W,) patch id of each pixel on Quantus' centred padding, and the patch grid (nh, nw)."""
        p = self.patch_size
        pad_top, pad_left = ((-h) % p) // 2, ((-w) % p) // 2
        nh, nw = -(-h // p), -(-w // p)
        ys = (torch.arange(h, device=device) + pad_top) // p
        xs = (torch.arange(w, device=device) + pad_left) // p
        return (ys[:, None] * nw + xs[None, :]).flatten(), nh, nw

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        b, c, h, w = x.shape
        pid, nh, nw = self.region_ids(h, w, x.device)
        s = clean_maps(maps).to(x.device).double().flatten(1)
        sums = torch.zeros(b, nh * nw, dtype=torch.float64, device=x.device).index_add_(1, pid, s)
        patch_rank = saliency_rank(sums.view(b, nh, nw), tie_seeds(self.seed, seeds, b), self.order == "morf")
        rank = patch_rank[:, pid]  # (B,HW): rank of the pixel's patch
        steps_n = min(self.regions, nh * nw)
        jobs = torch.cartesian_prod(torch.arange(b, device=x.device), torch.arange(1, steps_n + 1, device=x.device))
        f_x, out = perturbation_curve(model, x, target, rank, jobs[:, 0], jobs[:, 1],
                                      substrate_value(x, self.baseline), model.score_kind(self.score), self.chunk_size)
        curve = f_x[:, None] - out.view(b, steps_n)
        return MetricResult(values=curve.sum(1) / (steps_n + 1), curves=curve)


@METRICS.register("aopc_morf")
@dataclass
class AOPCMoRF(RegionPerturbation):
    """AOPC, most relevant regions first (Samek et al., IEEE TNNLS 2017): the mean score drop; higher is better."""

    order: ClassVar[str] = "morf"
    higher_is_better: ClassVar[bool] = True


@METRICS.register("aopc_lerf")
@dataclass
class AOPCLeRF(RegionPerturbation):
    """AOPC, least relevant regions first (Samek et al., IEEE TNNLS 2017): the mean score drop; lower is better."""

    order: ClassVar[str] = "lerf"
    higher_is_better: ClassVar[bool] = False


def slic_segments(images: np.ndarray, n_segments: int, compactness: float) -> Tensor:
    """(B,H,W) int64 superpixel labels 0…K_i−1 of (B,C,H,W) images, from scikit-image's SLIC (Achanta
    et al., TPAMI 2012) on each image in H×W×C float64 (Quantus' call; skimage has no batch API)."""
    from skimage.segmentation import slic

    labels = [slic(np.moveaxis(im, 0, -1).astype("double"), n_segments=n_segments, compactness=compactness,
                   start_label=0) for im in images]
    return torch.stack([torch.unique(torch.from_numpy(lab).long(), return_inverse=True)[1] for lab in labels])


@METRICS.register("irof")
@dataclass
class IROF(ImageMetric):
    """Iterative removal of features (Rieger & Hansen, "IROF: a low resource evaluation metric for
    explanation methods", ICLR 2020 workshop), docs/metrics.md "IROF": SLIC superpixels sorted by their
    mean S, removed one more at a time (set to `baseline`); curve f_c(x_k)/f_c(x), k = 1…K; value =
    K − trapezoid area of the curve with unit spacing, Quantus `IROF`'s area over the curve; higher
    is better. Extra `segments`: K."""

    higher_is_better: ClassVar[bool] = True
    segments: int = param(100, help="SLIC's target number of superpixels (n_segments)", ge=2)
    compactness: float = param(10.0, help="SLIC's compactness (colour vs space)", gt=0)
    segment_space: Literal["pixel", "input"] = param("pixel", help="SLIC runs on the image in pixel space, or on "
                                                                   "the model input (Quantus' x_batch)")
    baseline: Baseline = param("mean", help="value of removed superpixels: mean (image mean) or black (image minimum)")
    score: Literal["softmax", "logit"] = param("softmax", help="class score f_c: softmax (Quantus' default) or logit")
    chunk_size: ChunkSize = param(64, help="perturbed inputs per model call; auto: sized from the memory budget",
                                  ge=1)
    seed: int = param(0, help="seed of the tie-breaking superpixel order")

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        b, c, h, w = x.shape
        seg_image = model.denormalize(x) if self.segment_space == "pixel" else x
        seg = slic_segments(seg_image.detach().cpu().numpy(), self.segments, self.compactness).to(x.device)
        k_img = seg.flatten(1).amax(1) + 1  # (B,) superpixels per image
        k_max = int(k_img.max())
        s = clean_maps(maps).to(x.device).double().flatten(1)
        flat = seg.flatten(1)
        sums = torch.zeros(b, k_max, dtype=torch.float64, device=x.device).scatter_add_(1, flat, s)
        counts = torch.zeros_like(sums).scatter_add_(1, flat, torch.ones_like(s))
        means = torch.where(counts > 0, sums / counts.clamp_min(1), -torch.inf)  # padding last
        seg_rank = saliency_rank(means[:, None, :], tie_seeds(self.seed, seeds, b))
        rank = seg_rank.gather(1, flat)
        img = torch.repeat_interleave(torch.arange(b, device=x.device), k_img)
        steps = torch.cat([torch.arange(1, int(k) + 1, device=x.device) for k in k_img.tolist()])
        f_x, out = perturbation_curve(model, x, target, rank, img, steps, substrate_value(x, self.baseline),
                                      model.score_kind(self.score), self.chunk_size)
        ratio = (out.double() / f_x.double()[img]).cpu()
        aoc = torch.stack([k - torch.trapezoid(r) for k, r in zip(k_img.tolist(), ratio.split(k_img.tolist()))])
        return MetricResult(values=aoc.float().to(x.device), extras={"segments": k_img.float()})

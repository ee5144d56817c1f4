"""Localization metrics against ground-truth boxes or masks: pointing game, energy-based
pointing game, box IoU of the thresholded map, relevance mass and rank accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from ..registry import param
from ..tensorops import minmax
from .base import METRICS, ImageMetric, MetricResult, clean_maps
from .ordering import saliency_argmax, saliency_rank, tie_seeds

Region = Literal["auto", "mask", "boxes"]
REGION_HELP = "ground truth: auto (the mask when present, else the boxes), mask or boxes"
SEED_HELP = "seed of the tie-breaking pixel order"


def boxes_to_mask(boxes: list[Tensor | None], h: int, w: int, device: torch.device) -> Tensor:
    """(B,H,W) bool union of each image's xyxy boxes; a pixel is inside when its centre is."""
    ys = torch.arange(h, device=device, dtype=torch.float32) + 0.5
    xs = torch.arange(w, device=device, dtype=torch.float32) + 0.5
    out = torch.zeros(len(boxes), h, w, dtype=torch.bool, device=device)
    for i, bx in enumerate(boxes):  # a few boxes per image: the pixel test itself is batched over boxes
        if bx is None or len(bx) == 0:
            continue
        bx = bx.to(device=device, dtype=torch.float32).view(-1, 4)
        in_y = (ys[None, :] >= bx[:, 1:2]) & (ys[None, :] <= bx[:, 3:4])  # (K,H)
        in_x = (xs[None, :] >= bx[:, 0:1]) & (xs[None, :] <= bx[:, 2:3])  # (K,W)
        out[i] = (in_y[:, :, None] & in_x[:, None, :]).any(0)
    return out


def ground_truth(annotation: dict[str, Any] | None, shape: tuple[int, int, int], device, region: str) -> Tensor:
    """(B,H,W) bool ground-truth region: the mask (`auto` when present) or the union of boxes."""
    annotation = annotation or {}
    b, h, w = shape
    use_mask = region == "mask" or (region == "auto" and annotation.get("mask") is not None)
    if use_mask:
        if annotation.get("mask") is None:
            raise DataError("this metric was asked for region 'mask' but the dataset gives no masks; use 'boxes'")
        mask = annotation["mask"].to(device).bool()
        if tuple(mask.shape) != (b, h, w):
            raise DataError(f"mask of shape {tuple(mask.shape)} does not match the maps {(b, h, w)}")
        return mask
    if annotation.get("boxes") is None:
        raise DataError("this metric needs boxes (or masks with region 'mask'); the annotation has neither")
    return boxes_to_mask(list(annotation["boxes"]), h, w, device)


def class_balanced_mean(values: Tensor, classes: Tensor) -> Tensor:
    """Mean over classes of each class's mean value (TorchRay's pointing-game accuracy), NaN ignored."""
    keep = ~torch.isnan(values)
    values, classes = values[keep].double(), classes[keep].long()
    if values.numel() == 0:
        return torch.tensor(float("nan"))
    uniq, inv = torch.unique(classes, return_inverse=True)
    sums = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inv, values)
    counts = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inv, torch.ones_like(values))
    return (sums / counts).mean().float()


@METRICS.register("pointing_game")
@dataclass
class PointingGame(ImageMetric):
    """Pointing game (Zhang et al., ECCV 2016 / IJCV 2018), docs/metrics.md "Localization".

    A hit (1) when the map's maximum (ties broken by the seeded permutation) lies within
    `tolerance` px (given at 224 px, scaled with min(H,W); TorchRay's strict `<` distance) of the
    ground-truth region; `tolerance: 0` is Quantus' strict variant (the maximum itself inside).
    Extra `hit_strict` is the tolerance-0 hit. The per-class mean of TorchRay is an aggregate over
    the dataset: `class_balanced_mean(values, targets)`.
    """

    higher_is_better: ClassVar[bool] = True
    needs: ClassVar[frozenset[str]] = frozenset({"boxes"})
    class_mean: ClassVar[str | None] = "mean of per-class hit rates"  # TorchRay's accuracy
    tolerance: float = param(15.0, help="hit radius around the maximum, px at 224 px (scaled with the image); 0: strict",
                             ge=0)
    region: Region = param("auto", help=REGION_HELP)
    seed: int = param(0, help=SEED_HELP)

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        maps = clean_maps(maps)
        b, h, w = maps.shape
        gt = ground_truth(annotation, (b, h, w), maps.device, self.region)
        flat = saliency_argmax(maps, tie_seeds(self.seed, seeds, b))
        py, px = flat // w, flat % w
        strict = gt.reshape(b, -1).gather(1, flat[:, None]).squeeze(1)
        tol = self.tolerance * min(h, w) / 224.0
        if tol > 0:
            yy = torch.arange(h, device=maps.device).view(1, h, 1) - py.view(b, 1, 1)
            xx = torch.arange(w, device=maps.device).view(1, 1, w) - px.view(b, 1, 1)
            near = (yy * yy + xx * xx).float() < tol * tol
            hit = (gt & near).flatten(1).any(1) | strict
        else:
            hit = strict
        return MetricResult(values=hit.float(), extras={"hit_strict": strict.float()})


@METRICS.register("energy_pointing_game")
@dataclass
class EnergyPointingGame(ImageMetric):
    """Energy-based pointing game (Wang et al., Score-CAM, CVPRW 2020): Σ Ŝ·[inside] / Σ Ŝ with Ŝ
    the min-max normalized map; a constant map has no energy and scores 0."""

    higher_is_better: ClassVar[bool] = True
    needs: ClassVar[frozenset[str]] = frozenset({"boxes"})
    region: Region = param("auto", help=REGION_HELP)

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        s = minmax(clean_maps(maps).double())
        gt = ground_truth(annotation, tuple(s.shape), s.device, self.region)
        total = s.sum(dim=(1, 2))
        inside = (s * gt).sum(dim=(1, 2))
        return MetricResult(values=torch.where(total > 0, inside / total.clamp_min(1e-300), 0.0).float())


def largest_component_boxes(binary: np.ndarray) -> np.ndarray:
    """(B,4) xyxy pixel-edge box of the largest 8-connected component of each (B,H,W) binary map,
    labelled in one `scipy.ndimage.label` call (no connection across images); NaN when empty."""
    from scipy import ndimage

    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True  # 8-connectivity within each image only
    labels, n = ndimage.label(binary, structure=structure)
    out = np.full((binary.shape[0], 4), np.nan)
    if n == 0:
        return out
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    slices = ndimage.find_objects(labels)
    img = np.array([s[0].start for s in slices])
    order = np.lexsort((-sizes, img))  # by image, largest first
    first = order[np.r_[True, img[order][1:] != img[order][:-1]]]
    for lab in first:  # one box per image, read from find_objects
        sy, sx = slices[lab][1], slices[lab][2]
        out[img[lab]] = (sx.start, sy.start, sx.stop, sy.stop)
    return out


def box_iou_matrix(a: Tensor, b: Tensor) -> Tensor:
    """IoU of (4,) box `a` against (K,4) boxes `b`, xyxy."""
    lt = torch.maximum(a[:2], b[:, :2])
    rb = torch.minimum(a[2:], b[:, 2:])
    inter = (rb - lt).clamp_min(0).prod(1)
    area = lambda t: (t[..., 2] - t[..., 0]).clamp_min(0) * (t[..., 3] - t[..., 1]).clamp_min(0)  # noqa: E731
    union = area(a) + area(b) - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(inter))


@METRICS.register("box_iou")
@dataclass
class BoxIoU(ImageMetric):
    """Localization by bounding box (Zhou et al., CAM, CVPR 2016): threshold S at τ·max(S), box of
    the largest connected component, IoU with the best-matching ground-truth box. Extra `hit` is
    IoU ≥ 0.5 (localization accuracy)."""

    higher_is_better: ClassVar[bool] = True
    needs: ClassVar[frozenset[str]] = frozenset({"boxes"})
    threshold: float = param(0.15, help="the map is kept where >= threshold × its maximum", ge=0, le=1)
    hit_iou: float = param(0.5, help="IoU that counts as a hit (extra `hit`)", ge=0, le=1)

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        maps = clean_maps(maps)
        boxes = (annotation or {}).get("boxes")
        if boxes is None:
            raise DataError("box_iou needs ground-truth boxes; the annotation has none")
        peak = maps.amax(dim=(1, 2), keepdim=True)
        binary = maps >= self.threshold * peak
        pred = torch.from_numpy(largest_component_boxes(binary.cpu().numpy())).to(maps.device, torch.float32)
        ious = torch.zeros(maps.shape[0], device=maps.device)
        for i, gt in enumerate(boxes):  # K boxes per image; the IoU itself is batched over them
            if gt is not None and len(gt) and not torch.isnan(pred[i]).any():
                ious[i] = box_iou_matrix(pred[i], gt.to(maps.device, torch.float32).view(-1, 4)).max()
        return MetricResult(values=ious, extras={"hit": (ious >= self.hit_iou).float()})


@METRICS.register("relevance_mass_accuracy")
@dataclass
class RelevanceMassAccuracy(ImageMetric):
    """Relevance mass accuracy (Arras et al., CLEVR-XAI, Inf. Fusion 2022): the share of positive
    relevance inside the mask, Σ S⁺·mask / Σ S⁺; a map without positive relevance scores 0."""

    higher_is_better: ClassVar[bool] = True
    needs: ClassVar[frozenset[str]] = frozenset({"mask"})

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        s = clean_maps(maps).double().clamp_min(0)
        gt = ground_truth(annotation, tuple(s.shape), s.device, "mask")
        total = s.sum(dim=(1, 2))
        inside = (s * gt).sum(dim=(1, 2))
        return MetricResult(values=torch.where(total > 0, inside / total.clamp_min(1e-300), 0.0).float())


@METRICS.register("relevance_rank_accuracy")
@dataclass
class RelevanceRankAccuracy(ImageMetric):
    """Relevance rank accuracy (Arras et al., CLEVR-XAI, Inf. Fusion 2022): the share of the
    top-|mask| pixels by S that lie inside the mask (ties broken by the seeded permutation)."""

    higher_is_better: ClassVar[bool] = True
    needs: ClassVar[frozenset[str]] = frozenset({"mask"})
    seed: int = param(0, help=SEED_HELP)

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        maps = clean_maps(maps)
        gt = ground_truth(annotation, tuple(maps.shape), maps.device, "mask").flatten(1)
        k = gt.sum(1, keepdim=True)
        top = saliency_rank(maps, tie_seeds(self.seed, seeds, maps.shape[0])) < k
        hits = (top & gt).sum(1).double()
        return MetricResult(values=torch.where(k[:, 0] > 0, hits / k[:, 0].clamp_min(1), 0.0).float())

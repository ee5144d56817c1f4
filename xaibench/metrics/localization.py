"""Localization metrics against ground-truth boxes or masks: pointing game, energy-based
pointing game, box IoU of the thresholded map, relevance mass and rank accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, DataError
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


def target_boxes(annotation: dict[str, Any], target: Tensor | None) -> list[Tensor | None]:
    """Per image the boxes of the class scored (TorchRay): with `box_labels` (VOC: every object's
    class) the boxes of class `target`; without, all boxes, which belong to the label — so None
    (no known region) where `labels` are given and the target is another class. `target` None:
    the labels'."""
    boxes = list(annotation["boxes"])
    labels, box_labels = annotation.get("labels"), annotation.get("box_labels")
    target = target if target is not None else labels
    out: list[Tensor | None] = []
    for i, bx in enumerate(boxes):
        t = None if target is None else int(target[i])
        if bx is None or t is None:
            out.append(bx)
        elif box_labels is not None and box_labels[i] is not None:
            out.append(bx[box_labels[i].to(bx.device) == t])
        elif labels is not None and int(labels[i]) != t:
            out.append(None)
        else:
            out.append(bx)
    return out


def ground_truth(annotation: dict[str, Any] | None, shape: tuple[int, int, int], device, region: str,
                 target: Tensor | None = None) -> Tensor:
    """(B,H,W) bool ground-truth region of the class scored: the mask (`auto` when present) or the
    union of the boxes of class `target` (`target_boxes`). A mask belongs to the label: empty where
    `labels` are given and the target is another class. An empty region is skipped by the metrics."""
    annotation = annotation or {}
    b, h, w = shape
    use_mask = region == "mask" or (region == "auto" and annotation.get("mask") is not None)
    if use_mask:
        if annotation.get("mask") is None:
            raise DataError("this metric was asked for region 'mask' but the dataset gives no masks; use 'boxes'")
        mask = annotation["mask"].to(device).bool()
        if tuple(mask.shape) != (b, h, w):
            raise DataError(f"mask of shape {tuple(mask.shape)} does not match the maps {(b, h, w)}")
        labels = annotation.get("labels")
        if target is not None and labels is not None:
            mask = mask & (labels.to(device).long() == target.to(device).long()).view(-1, 1, 1)
        return mask
    if annotation.get("boxes") is None:
        raise DataError("this metric needs boxes (or masks with region 'mask'); the annotation has neither")
    return boxes_to_mask(target_boxes(annotation, target), h, w, device)


def is_flat(maps: Tensor) -> Tensor:
    """(B,) bool: the map is constant (all-zero included), so it has no peak and no region."""
    flat = maps.flatten(1)
    return flat.amax(1) == flat.amin(1)


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
    """Pointing game (Zhang et al., ECCV 2016 / IJCV 2018), docs/metrics.md "Localization", as
    TorchRay scores it.

    A hit (1) when the map's maximum (ties broken by the seeded permutation) lies within
    `tolerance` px (given at 224 px, scaled with min(H,W); TorchRay's strict `<` distance) of the
    ground-truth region of the class scored; `tolerance: 0` is Quantus' strict variant. An image
    whose region is empty (no box of that class, a prediction other than the annotated class) is
    skipped, not a miss; a constant map is a miss. Extra `hit_strict` is the tolerance-0 hit.
    `classes: annotated` is TorchRay's multi-class protocol: every class annotated in the image is
    explained (`explain`) and scored; the curve holds the hit per class (NaN: class absent), the
    value their mean; TorchRay's figure (each class's hit rate over the images annotated with it,
    then the mean over the classes present) is summary.csv's `pointing_game:dataset` row.
    """

    higher_is_better: ClassVar[bool] = True
    needs: ClassVar[frozenset[str]] = frozenset({"region"})
    class_mean: ClassVar[str | None] = "mean of per-class hit rates"  # TorchRay's accuracy
    tolerance: float = param(15.0, help="hit radius around the maximum, px at 224 px (scaled with the image); 0: strict",
                             ge=0)
    region: Region = param("auto", help=REGION_HELP)
    classes: Literal["target", "annotated"] = param("target", help="target: the run's target class; annotated: "
                                                    "every class annotated in the image (TorchRay multi-class)")
    seed: int = param(0, help=SEED_HELP)

    def dataset_aggregate(self) -> dict | None:
        return {"name": "mean_over_classes_of_hit_rate", "params": {}} if self.classes == "annotated" else None

    def hits(self, maps: Tensor, gt: Tensor, keys: Tensor) -> tuple[Tensor, Tensor]:
        """(hit, strict hit) of each map against its region, ties keyed by `keys` (B,)."""
        b, h, w = maps.shape
        flat = saliency_argmax(maps, keys)
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
        peak = ~is_flat(maps)  # a constant map points nowhere: a miss (docs/metrics.md "Failed maps")
        return hit & peak, strict & peak

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        maps = clean_maps(maps)
        b = maps.shape[0]
        keys = tie_seeds(self.seed, seeds, b)
        if self.classes == "annotated":
            return self.multiclass(model, x, maps, target, annotation or {}, explain, keys)
        gt = ground_truth(annotation, tuple(maps.shape), maps.device, self.region, target)
        hit, strict = self.hits(maps, gt, keys)
        empty = ~gt.flatten(1).any(1)  # TorchRay: no region, no game (skipped and counted)
        nan = torch.tensor(float("nan"), device=maps.device)
        return MetricResult(values=torch.where(empty, nan, hit.float()),
                            extras={"hit_strict": torch.where(empty, nan, strict.float())}, skipped=empty.cpu())

    def multiclass(self, model, x, maps, target, annotation, explain, keys) -> MetricResult:
        """Every annotated class of every image explained in one call and scored against its boxes."""
        if explain is None:
            raise ConfigError("pointing_game with classes: annotated re-runs the explainer for every annotated "
                              "class: call it with explain=callable(model, x, target)")
        b, h, w = maps.shape
        box_labels, labels = annotation.get("box_labels"), annotation.get("labels")
        per_image = [torch.unique(box_labels[i]).tolist() if box_labels is not None and box_labels[i] is not None
                     else [int((labels if labels is not None else target)[i])] for i in range(b)]
        pairs = [(i, c) for i, cs in enumerate(per_image) for c in cs]
        n_classes = model.num_classes
        curves = torch.full((b, n_classes), float("nan"), device=maps.device)
        if pairs:
            img = torch.tensor([i for i, _ in pairs], device=x.device)
            cls = torch.tensor([c for _, c in pairs], device=x.device)
            pair_maps = clean_maps(explain(model, x[img], cls)).to(maps.device)
            pair_ann = {k: ([v[i] for i in img.tolist()] if isinstance(v, list) else v[img.to(v.device)])
                        for k, v in annotation.items() if v is not None}
            gt = ground_truth(pair_ann, tuple(pair_maps.shape), maps.device, self.region, cls)
            hit, _ = self.hits(pair_maps, gt, keys[img.cpu()])
            scored = gt.flatten(1).any(1)
            curves[img[scored].to(maps.device), cls[scored].to(maps.device)] = hit[scored].float()
        values = curves.nanmean(1)
        return MetricResult(values=values, curves=curves, skipped=torch.isnan(values).cpu())


@METRICS.register("energy_pointing_game")
@dataclass
class EnergyPointingGame(ImageMetric):
    """Energy-based pointing game (Wang et al., Score-CAM, CVPRW 2020): Σ Ŝ·[inside] / Σ Ŝ with Ŝ
    the min-max normalized map; a constant map has no energy and scores 0."""

    higher_is_better: ClassVar[bool] = True
    needs: ClassVar[frozenset[str]] = frozenset({"region"})
    region: Region = param("auto", help=REGION_HELP)

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        s = minmax(clean_maps(maps).double())
        gt = ground_truth(annotation, tuple(s.shape), s.device, self.region, target)
        total = s.sum(dim=(1, 2))
        inside = (s * gt).sum(dim=(1, 2))
        empty = ~gt.flatten(1).any(1)  # no region of the class scored: skipped
        values = torch.where(total > 0, inside / total.clamp_min(1e-300), 0.0)
        return MetricResult(values=torch.where(empty, float("nan"), values).float(), skipped=empty.cpu())


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
    IoU ≥ 0.5 (localization accuracy). A constant map, or one whose maximum is ≤ 0, has no box: IoU 0."""

    higher_is_better: ClassVar[bool] = True
    needs: ClassVar[frozenset[str]] = frozenset({"boxes"})
    threshold: float = param(0.15, help="the map is kept where >= threshold × its maximum", ge=0, le=1)
    hit_iou: float = param(0.5, help="IoU that counts as a hit (extra `hit`)", ge=0, le=1)

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        maps = clean_maps(maps)
        if (annotation or {}).get("boxes") is None:
            raise DataError("box_iou needs ground-truth boxes; the annotation has none")
        boxes = target_boxes(annotation, target)  # the boxes of the class scored
        peak = maps.amax(dim=(1, 2), keepdim=True)
        # no box from a constant map or one without a positive peak (docs/metrics.md "Failed maps")
        binary = (maps >= self.threshold * peak) & ((peak > 0) & ~is_flat(maps)[:, None, None])
        pred = torch.from_numpy(largest_component_boxes(binary.cpu().numpy())).to(maps.device, torch.float32)
        ious = torch.zeros(maps.shape[0], device=maps.device)
        for i, gt in enumerate(boxes):  # K boxes per image; the IoU itself is batched over them
            if gt is not None and len(gt) and not torch.isnan(pred[i]).any():
                ious[i] = box_iou_matrix(pred[i], gt.to(maps.device, torch.float32).view(-1, 4)).max()
        empty = torch.tensor([gt is None or len(gt) == 0 for gt in boxes], device=maps.device)  # skipped
        ious = torch.where(empty, float("nan"), ious)
        hit = torch.where(empty, float("nan"), (ious >= self.hit_iou).float())
        return MetricResult(values=ious, extras={"hit": hit}, skipped=empty.cpu())


@METRICS.register("relevance_mass_accuracy")
@dataclass
class RelevanceMassAccuracy(ImageMetric):
    """Relevance mass accuracy (Arras et al., CLEVR-XAI, Inf. Fusion 2022): the share of positive
    relevance inside the mask, Σ S⁺·mask / Σ S⁺; a map without positive relevance, or constant, scores 0."""

    higher_is_better: ClassVar[bool] = True
    needs: ClassVar[frozenset[str]] = frozenset({"mask"})

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        s = clean_maps(maps).double().clamp_min(0)
        gt = ground_truth(annotation, tuple(s.shape), s.device, "mask", target)
        total = s.sum(dim=(1, 2))
        inside = (s * gt).sum(dim=(1, 2))
        ok = (total > 0) & ~is_flat(s)  # a constant map localizes nothing: 0
        return MetricResult(values=torch.where(ok, inside / total.clamp_min(1e-300), 0.0).float())


@METRICS.register("relevance_rank_accuracy")
@dataclass
class RelevanceRankAccuracy(ImageMetric):
    """Relevance rank accuracy (Arras et al., CLEVR-XAI, Inf. Fusion 2022): the share of the
    top-|mask| pixels by S that lie inside the mask (ties broken by the seeded permutation); a constant map 0."""

    higher_is_better: ClassVar[bool] = True
    needs: ClassVar[frozenset[str]] = frozenset({"mask"})
    seed: int = param(0, help=SEED_HELP)

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        maps = clean_maps(maps)
        gt = ground_truth(annotation, tuple(maps.shape), maps.device, "mask", target).flatten(1)
        k = gt.sum(1, keepdim=True)
        top = saliency_rank(maps, tie_seeds(self.seed, seeds, maps.shape[0])) < k
        hits = (top & gt).sum(1).double()
        ok = (k[:, 0] > 0) & ~is_flat(maps)  # a constant map has no top pixels: 0
        return MetricResult(values=torch.where(ok, hits / k[:, 0].clamp_min(1), 0.0).float())

"""Box localization over a threshold sweep (Choe et al., CVPR 2020, wsolevaluation's BoxAcc(τ), MaxBoxAcc
and MaxBoxAccV2): per image and τ, the boxes of the thresholded map's components against the true boxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from ..registry import param
from ..tensorops import minmax
from .base import METRICS, ImageMetric, MetricResult, clean_maps
from .component_sweep import largest_component_boxes_by_cut, largest_component_boxes_wsol


def all_contour_boxes_wsol(binary: np.ndarray, min_area: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The boxes of every contour OpenCV's `findContours(RETR_TREE)` finds in each (N,H,W) binary plane,
    in wsolevaluation's convention, as ((M,4) int64 boxes, (M,) plane of each): each 8-connected
    component's outer border (its pixels' box) and each hole's border — a 4-connected background
    component not touching the plane's edge, whose border pixels span the hole's box grown by one.
    Two `scipy.ndimage.label` calls for all planes; no per-plane loop. With `min_area` (N,), a contour
    whose box cannot reach that area in plane p (wsolevaluation's inclusive area; a bound from its pixel
    count k, below) is skipped, which lets `MaxBoxAccV2` drop the speckle of noisy maps without changing
    any best IoU."""
    from scipy import ndimage

    n, h, w = binary.shape
    eight, four = np.zeros((3, 3, 3), dtype=bool), np.zeros((3, 3, 3), dtype=bool)
    eight[1] = True
    four[1, 1, :] = four[1, :, 1] = True
    boxes, planes = [], []
    for mask, structure, grow in ((binary, eight, 0), (~binary, four, 1)):
        labels, count = ndimage.label(mask, structure=structure)
        keep = np.ones(count + 1, dtype=bool)
        keep[0] = False
        if grow:  # background touching the edge is the outside, not a hole
            edge = np.concatenate([labels[:, 0].ravel(), labels[:, -1].ravel(), labels[:, :, 0].ravel(),
                                   labels[:, :, -1].ravel()])
            keep[np.unique(edge)] = False
        if min_area is not None and count:
            sizes = np.bincount(labels.ravel(), minlength=count + 1)
            ends = np.maximum.accumulate(labels.reshape(n, -1).max(1))  # labels run in raster order, plane by plane
            plane = np.minimum(np.searchsorted(ends, np.arange(count + 1)), n - 1)
            # a k-pixel component spans w, h ≤ k (8-connected, diagonals) and its box (w + 1)(h + 1) ≤ (k + 1)²;
            # a k-pixel hole spans w + h ≤ k + 1 (4-connected), its border's box (w + 3)(h + 3) ≤ ((k + 7)/2)²
            bound = (sizes + 1.0) ** 2 if not grow else ((sizes + 7) / 2) ** 2
            keep &= bound >= min_area[plane]
        ids = np.flatnonzero(keep)
        if not len(ids):
            continue
        lut = np.zeros(count + 1, dtype=np.int32)
        lut[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
        found = ndimage.find_objects(lut[labels])
        p, y0, y1, x0, x1 = np.array([(sl[0].start, sl[1].start, sl[1].stop - 1, sl[2].start, sl[2].stop - 1)
                                      for sl in found]).T
        boxes.append(np.stack([x0 - grow, y0 - grow, np.minimum(x1 + grow + 1, w - 1),
                               np.minimum(y1 + grow + 1, h - 1)], 1))
        planes.append(p)
    if not boxes:
        return np.zeros((0, 4), dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(boxes).astype(np.int64), np.concatenate(planes).astype(np.int64)


def wsol_iou(pred: Tensor, gt: Tensor) -> Tensor:
    """(N,K) IoU of (N,4) boxes against (K,4) boxes in wsolevaluation's inclusive integer convention
    (`calculate_multiple_iou`: areas (x1 − x0 + 1)·(y1 − y0 + 1); 0 for a degenerate union)."""
    pred, gt = pred.double()[:, None], gt.double()[None]
    iw = (torch.minimum(pred[..., 2], gt[..., 2]) - torch.maximum(pred[..., 0], gt[..., 0]) + 1).clamp_min(0)
    ih = (torch.minimum(pred[..., 3], gt[..., 3]) - torch.maximum(pred[..., 1], gt[..., 1]) + 1).clamp_min(0)
    inter = iw * ih
    area = lambda b: (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)  # noqa: E731
    union = area(pred) + area(gt) - inter
    return torch.where(union > 0, inter / torch.where(union > 0, union, torch.ones_like(union)), 0.0)


def max_box_acc(hits: Tensor) -> tuple[float, int]:
    """MaxBoxAcc (Choe et al. 2020) of a dataset from its (N,T) per-image hit curves (the stored
    `/curves/<explainer>/max_box_acc`): max over τ of the share of images hit, and that τ's index."""
    acc = hits.double().mean(0)
    best = int(acc.argmax())
    return float(acc[best]), best


def quantized_cuts(maps: Tensor, thresholds: int) -> tuple[Tensor, Tensor]:
    """wsolevaluation's map preparation: (B,H,W) uint8 maps, min-max normalized and quantized, and the
    (B,T) float64 cuts int(τ·max) for τ = i/`thresholds` (whole numbers in 0..254); plane τ is quant > cut."""
    quant = (minmax(clean_maps(maps).float()) * 255).to(torch.uint8).cpu()  # wsol: uint8 score map
    taus = torch.from_numpy(np.arange(0, 1, 1 / thresholds)[:thresholds])  # wsol's list
    return quant, (taus[None] * quant.flatten(1).amax(1).double()[:, None]).floor()


def threshold_sweep(maps: Tensor, thresholds: int, chunk_images: int):
    """wsolevaluation's map preparation and sweep: min-max normalized, quantized to uint8; for each
    τ = i/`thresholds` the plane of pixels > int(τ·max). Yields (image slice, (b'·T,H,W) binary planes)."""
    b, h, w = maps.shape
    quant, cut = quantized_cuts(maps, thresholds)
    for start in range(0, b, chunk_images):
        sl = slice(start, min(b, start + chunk_images))
        # (b',T,H,W); the cuts are whole numbers in 0..254, so comparing in uint8 is exact
        binary = quant[sl, None].numpy() > cut[sl, :, None, None].to(torch.uint8).numpy()
        yield sl, binary.reshape(-1, h, w)


@dataclass
class BoxSweep(ImageMetric):
    """The threshold sweep MaxBoxAcc and MaxBoxAccV2 share (Choe et al., CVPR 2020): per image and τ,
    the best IoU of the thresholded map's predicted box(es) with a true box."""

    needs: ClassVar[frozenset[str]] = frozenset({"boxes"})
    thresholds: int = param(100, help="number of map thresholds tau = i/thresholds, i = 0..thresholds-1 "
                                      "(wsolevaluation's cam_curve_interval 0.01)", ge=1)
    chunk_images: int = param(4, help="images whose thresholded planes are labelled in one call (max_box_acc: "
                                      "its densely labelled planes go chunk_images x thresholds a call)", ge=1)

    def needed_areas(self, planes: np.ndarray, boxes: list) -> np.ndarray:
        """(planes,) the box area a contour needs to beat the plane's largest component's IoU L with any
        true box (IoU ≤ area / smallest true area, so area ≥ L · that area); inf for an image without boxes."""
        first = torch.from_numpy(largest_component_boxes_wsol(planes)).view(len(boxes), self.thresholds, 4)
        need = np.full((len(boxes), self.thresholds), np.inf)
        for i, gt in enumerate(boxes):
            if gt is not None and len(gt):
                gt = gt.detach().cpu().view(-1, 4).double()
                smallest = float(((gt[:, 2] - gt[:, 0] + 1) * (gt[:, 3] - gt[:, 1] + 1)).min())
                need[i] = wsol_iou(first[i], gt).amax(1).numpy() * smallest
        return need.reshape(-1)

    def best_ious(self, maps: Tensor, annotation: dict | None, multi_contour: bool) -> Tensor:
        """(B,T) float64: per image and τ the best IoU of the predicted box(es) with a true box — the
        largest component's box, or (`multi_contour`, V2) every contour's box."""
        boxes = (annotation or {}).get("boxes")
        if boxes is None:
            raise DataError(f"{self.name} needs ground-truth boxes; the annotation has none")
        b = maps.shape[0]
        ious = torch.zeros(b, self.thresholds, dtype=torch.float64)
        if not multi_contour:  # one largest component per (image, τ): all images' sweeps at once
            quant, cuts = quantized_cuts(maps, self.thresholds)
            pred = largest_component_boxes_by_cut(quant.numpy(), cuts.long().numpy(),
                                                  dense_planes=self.chunk_images * self.thresholds)
            for i, gt in enumerate(boxes):
                if gt is not None and len(gt):
                    ious[i] = wsol_iou(torch.from_numpy(pred[i]), gt.detach().cpu().view(-1, 4)).amax(1)
            return ious
        for sl, planes in threshold_sweep(maps, self.thresholds, self.chunk_images):
            # the largest component's IoU bounds the best from below: skip what cannot beat it
            pred, plane = all_contour_boxes_wsol(planes, self.needed_areas(planes, boxes[sl]))
            pred, plane = torch.from_numpy(pred), torch.from_numpy(plane)
            for i in range(sl.start, sl.stop):  # K boxes per image; the IoU is batched over boxes and K
                gt = boxes[i]
                first = (i - sl.start) * self.thresholds
                mine = (plane >= first) & (plane < first + self.thresholds)
                if gt is None or not len(gt) or not mine.any():
                    continue
                best = wsol_iou(pred[mine], gt.detach().cpu().view(-1, 4)).amax(1)
                ious[i].scatter_reduce_(0, plane[mine] - first, best, reduce="amax")
        return ious


@METRICS.register("max_box_acc")
@dataclass
class MaxBoxAcc(BoxSweep):
    """BoxAcc over a threshold sweep (Choe, Oh, Lee, Akata, Shim, "Evaluating Weakly Supervised Object
    Localization Methods Right", CVPR 2020; wsolevaluation's BoxEvaluator), docs/metrics.md "max_box_acc".
    The map is min-max normalized and quantized to uint8; for each τ = i/`thresholds` the pixels
    > int(τ·max) form a binary map whose largest component gives a box; curve = [IoU with the best
    ground-truth box ≥ `iou`] per τ. Value = the curve's mean over τ (its dataset mean is the mean BoxAcc
    over the sweep); MaxBoxAcc = max over τ of the curve's dataset mean, summary.csv's
    `max_box_acc:dataset` row (`max_box_acc()` from stored curves). Extra
    `best_iou`: the image's largest IoU over the sweep. Higher is better."""

    higher_is_better: ClassVar[bool] = True
    curve_aggregate: ClassVar[str | None] = "max_over_thresholds"
    iou: float = param(0.5, help="IoU that counts as a correct box (delta)", gt=0, le=1)

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        ious = self.best_ious(maps, annotation, multi_contour=False)
        hits = (ious >= self.iou).float()
        return MetricResult(values=hits.mean(1).to(maps.device), curves=hits.to(maps.device),
                            extras={"best_iou": ious.amax(1).float().to(maps.device)})


@METRICS.register("max_box_acc_v2")
@dataclass
class MaxBoxAccV2(BoxSweep):
    """MaxBoxAccV2 (Choe et al., CVPR 2020, wsolevaluation's `multi_contour_eval`, IoU thresholds 30/50/70),
    docs/metrics.md "max_box_acc_v2": per τ, the best IoU of any contour's box (every component and hole
    of the thresholded map, as OpenCV's RETR_TREE finds them) with a true box. Curve = that IoU per τ;
    value = the mean over δ in `ious` and τ of [IoU ≥ δ]; summary.csv's `max_box_acc_v2:dataset` = mean
    over δ of the max over τ of the share of images hit (the published MaxBoxAccV2). Higher is better."""

    higher_is_better: ClassVar[bool] = True
    curve_aggregate: ClassVar[str | None] = "mean_over_iou_of_max_over_thresholds"
    ious: list[float] = param(default_factory=lambda: [0.3, 0.5, 0.7], help="IoU thresholds delta averaged "
                              "(wsolevaluation's iou_threshold_list 30, 50, 70)", gt=0, le=1)

    def dataset_aggregate(self) -> dict:
        return {"name": self.curve_aggregate, "params": {"ious": [float(d) for d in self.ious]}}

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        ious = self.best_ious(maps, annotation, multi_contour=True)
        hits = torch.stack([(ious >= d).double().mean(1) for d in self.ious]).mean(0)
        return MetricResult(values=hits.float().to(maps.device), curves=ious.float().to(maps.device))

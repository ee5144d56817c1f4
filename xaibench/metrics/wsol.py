"""Box localization over a threshold sweep (Choe et al., CVPR 2020, wsolevaluation's BoxAcc(τ) and
MaxBoxAcc): per image and τ, the box of the largest component of the thresholded map against the boxes.
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


def largest_component_boxes_wsol(binary: np.ndarray) -> np.ndarray:
    """(N,4) int64 box of the largest 8-connected component of each (N,H,W) binary plane, in
    wsolevaluation's convention (x0, y0, min(x_max+1, W−1), min(y_max+1, H−1)); (0,0,0,0) for an empty
    plane. One `scipy.ndimage.label` call for all planes; on equal sizes the component whose first pixel
    comes first in raster order wins."""
    from scipy import ndimage

    n, h, w = binary.shape
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True  # 8-connectivity within a plane only
    labels, count = ndimage.label(binary, structure=structure)
    flat = labels.reshape(n, -1)
    # labels are numbered in raster order, so plane p holds the contiguous range starts[p]…ends[p]
    ends = np.maximum.accumulate(flat.max(1))
    starts = np.concatenate([[0], ends[:-1]]) + 1
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:].astype(np.int64)
    key = sizes * (count + 1) + (count - np.arange(1, count + 1))  # largest first, then the lowest label
    has = ends >= starts
    largest = np.zeros(n, dtype=np.int64)
    if has.any():
        best = np.maximum.reduceat(key, starts[has] - 1) if count else np.zeros(0, dtype=np.int64)
        largest[has] = count - best % (count + 1)
    inside = (flat == largest[:, None]).reshape(n, h, w) & (largest[:, None, None] > 0)
    rows, cols = inside.any(2), inside.any(1)
    y0, x0 = rows.argmax(1), cols.argmax(1)
    y1 = h - 1 - rows[:, ::-1].argmax(1)
    x1 = w - 1 - cols[:, ::-1].argmax(1)
    boxes = np.stack([x0, y0, np.minimum(x1 + 1, w - 1), np.minimum(y1 + 1, h - 1)], 1).astype(np.int64)
    boxes[~rows.any(1)] = 0
    return boxes


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


@METRICS.register("max_box_acc")
@dataclass
class MaxBoxAcc(ImageMetric):
    """BoxAcc over a threshold sweep (Choe, Oh, Lee, Akata, Shim, "Evaluating Weakly Supervised Object
    Localization Methods Right", CVPR 2020; wsolevaluation's BoxEvaluator), docs/metrics.md "max_box_acc".
    The map is min-max normalized and quantized to uint8; for each τ = i/`thresholds` the pixels
    > int(τ·max) form a binary map whose largest component gives a box; curve = [IoU with the best
    ground-truth box ≥ `iou`] per τ. Value = the curve's mean over τ (its dataset mean is the mean BoxAcc
    over the sweep); MaxBoxAcc = max over τ of the curve's dataset mean (`max_box_acc`). Extra
    `best_iou`: the image's largest IoU over the sweep. Higher is better."""

    higher_is_better: ClassVar[bool] = True
    needs: ClassVar[frozenset[str]] = frozenset({"boxes"})
    thresholds: int = param(100, help="number of map thresholds tau = i/thresholds, i = 0..thresholds-1 "
                                      "(wsolevaluation's cam_curve_interval 0.01)", ge=1)
    iou: float = param(0.5, help="IoU that counts as a correct box (delta)", gt=0, le=1)
    chunk_images: int = param(4, help="images whose thresholded planes are labelled in one call", ge=1)

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        boxes = (annotation or {}).get("boxes")
        if boxes is None:
            raise DataError("max_box_acc needs ground-truth boxes; the annotation has none")
        b, h, w = maps.shape
        quant = (minmax(clean_maps(maps).float()) * 255).to(torch.uint8).cpu()  # wsol: uint8 score map
        taus = torch.from_numpy(np.arange(0, 1, 1 / self.thresholds)[: self.thresholds])  # wsol's list
        cut = (taus[None] * quant.flatten(1).amax(1).double()[:, None]).floor()  # int(τ·max), (B,T)
        ious = torch.zeros(b, self.thresholds, dtype=torch.float64)
        for start in range(0, b, self.chunk_images):
            sl = slice(start, min(b, start + self.chunk_images))
            # (b',T,H,W); the cuts are whole numbers in 0..254, so comparing in uint8 is exact
            binary = quant[sl, None].numpy() > cut[sl, :, None, None].to(torch.uint8).numpy()
            pred = torch.from_numpy(largest_component_boxes_wsol(binary.reshape(-1, h, w)))
            pred = pred.view(-1, self.thresholds, 4)
            for i in range(sl.start, sl.stop):  # K boxes per image; the IoU is batched over τ and K
                gt = boxes[i]
                if gt is not None and len(gt):
                    ious[i] = wsol_iou(pred[i - sl.start], gt.detach().cpu().view(-1, 4)).amax(1)
        hits = (ious >= self.iou).float()
        return MetricResult(values=hits.mean(1).to(maps.device), curves=hits.to(maps.device),
                            extras={"best_iou": ious.amax(1).float().to(maps.device)})

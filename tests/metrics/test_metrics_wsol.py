"""max_box_acc against wsolevaluation's box inference and IoU (Choe et al. 2020, transcribed below with
OpenCV, as in its evaluation.py) over the whole threshold sweep; pixel-edge IoU (box_iou's) fails."""

import numpy as np
import pytest
import torch

from xaibench.metrics.base import METRICS
from xaibench.metrics.localization import box_iou_matrix
from xaibench.metrics.wsol import max_box_acc


def wsol_boxes(scoremap: np.ndarray, thresholds) -> np.ndarray:
    """wsolevaluation `compute_bboxes_from_scoremaps` (single contour): uint8 map, cv2 threshold,
    largest external/inner contour by area, boundingRect, x1/y1 clipped to W−1/H−1."""
    import cv2

    h, w = scoremap.shape
    image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    out = []
    for t in thresholds:
        _, binary = cv2.threshold(src=image, thresh=int(t * np.max(image)), maxval=255, type=cv2.THRESH_BINARY)
        contours = cv2.findContours(image=binary, mode=cv2.RETR_TREE, method=cv2.CHAIN_APPROX_SIMPLE)[0]
        if len(contours) == 0:
            out.append([0, 0, 0, 0])
            continue
        x, y, bw, bh = cv2.boundingRect(max(contours, key=cv2.contourArea))
        out.append([x, y, min(x + bw, w - 1), min(y + bh, h - 1)])
    return np.asarray(out)


def wsol_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """wsolevaluation `calculate_multiple_iou`: inclusive integer boxes (+1 in every extent)."""
    iw = np.maximum(0, np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1)
    ih = np.maximum(0, np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1)
    inter = iw * ih
    area = lambda z: (z[..., 2] - z[..., 0] + 1) * (z[..., 3] - z[..., 1] + 1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0)


def blob_maps(b: int, size: int) -> torch.Tensor:
    """Sums of two Gaussian blobs of different sizes per map: components that shrink with τ."""
    g = torch.Generator().manual_seed(4)
    yy, xx = torch.meshgrid(torch.arange(size.__float__()), torch.arange(size.__float__()), indexing="ij")
    maps = torch.zeros(b, size, size)
    for i in range(b):
        for amp, sig in ((1.0, 6.0), (0.7, 3.0)):
            cy, cx = torch.rand(2, generator=g) * (size - 8) + 4
            maps[i] += amp * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sig**2))
    return maps


def test_max_box_acc_matches_wsolevaluation():
    b, size, t = 6, 48, 100
    maps = blob_maps(b, size)
    g = torch.Generator().manual_seed(9)
    boxes = [torch.cat([torch.randint(0, 20, (2, 2), generator=g), torch.randint(24, 47, (2, 2), generator=g)], 1)
             .float() for _ in range(b)]
    res = METRICS.build("max_box_acc", thresholds=t, iou=0.5)(None, None, maps, None, annotation={"boxes": boxes})
    thresholds = np.arange(0, 1, 0.01)
    ious, edge_ious = [], []
    for i in range(b):
        m = maps[i].numpy()
        m = (m - m.min()) / (m.max() - m.min())  # wsolevaluation's normalize_scoremap
        pred = wsol_boxes(m.astype(np.float32), thresholds)
        ious.append(wsol_iou(pred, boxes[i].numpy()).max(1))
        edge_ious.append(np.stack([box_iou_matrix(torch.tensor(p, dtype=torch.float32), boxes[i]).max().item()
                                   for p in pred]))
    ious = np.stack(ious)
    ref_hits = ious >= 0.5
    worst = np.abs(res.curves.numpy() - ref_hits).max()
    print(f"max_box_acc vs wsolevaluation: worst abs diff of the (image, tau) hits {worst:.1e}, of best IoU "
          f"{np.abs(res.extras['best_iou'].numpy() - ious.max(1)).max():.1e}; MaxBoxAcc {max_box_acc(res.curves)[0]:.3f}")
    assert worst == 0
    assert np.allclose(res.extras["best_iou"].numpy(), ious.max(1), atol=1e-6)
    assert max_box_acc(res.curves)[0] == pytest.approx(ref_hits.mean(0).max())
    assert np.abs(np.stack(edge_ious) - ious).max() > 1e-2  # box_iou's pixel-edge IoU is another convention
    assert 0 < ref_hits.mean() < 1  # the sweep crosses the IoU threshold


def test_a_constant_map_has_no_box():
    boxes = [torch.tensor([[4.0, 4.0, 20.0, 20.0]])]
    res = METRICS.build("max_box_acc")(None, None, torch.zeros(1, 24, 24), None, annotation={"boxes": boxes})
    assert res.values.item() == 0.0 and res.extras["best_iou"].item() < 0.01

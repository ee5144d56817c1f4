"""max_box_acc against wsolevaluation's box inference and IoU (Choe et al. 2020, transcribed below with
OpenCV, as in its evaluation.py) over the whole threshold sweep; pixel-edge IoU (box_iou's) fails."""

import numpy as np
import pytest
import torch

from xaibench.metrics.base import METRICS
from xaibench.metrics.localization import box_iou_matrix
from xaibench.metrics.wsol import max_box_acc


def wsol_contours(scoremap: np.ndarray, thresholds):
    """wsolevaluation `compute_bboxes_from_scoremaps`' sweep: uint8 map, cv2 threshold, RETR_TREE contours;
    yields each threshold's contours."""
    import cv2

    image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    for t in thresholds:
        _, binary = cv2.threshold(src=image, thresh=int(t * np.max(image)), maxval=255, type=cv2.THRESH_BINARY)
        yield cv2.findContours(image=binary, mode=cv2.RETR_TREE, method=cv2.CHAIN_APPROX_SIMPLE)[0]


def wsol_box(contour, h: int, w: int) -> list[int]:
    """boundingRect, x1/y1 clipped to W−1/H−1 (wsolevaluation's box of a contour)."""
    import cv2

    x, y, bw, bh = cv2.boundingRect(contour)
    return [x, y, min(x + bw, w - 1), min(y + bh, h - 1)]


def wsol_boxes(scoremap: np.ndarray, thresholds) -> np.ndarray:
    """Single contour (MaxBoxAcc): the largest contour by area per threshold, (0,0,0,0) when none."""
    import cv2

    h, w = scoremap.shape
    return np.asarray([wsol_box(max(cs, key=cv2.contourArea), h, w) if len(cs) else [0, 0, 0, 0]
                       for cs in wsol_contours(scoremap, thresholds)])


def wsol_boxes_multi(scoremap: np.ndarray, thresholds) -> list[np.ndarray]:
    """`multi_contour_eval=True` (MaxBoxAccV2): every contour's box per threshold, (0,0,0,0) when none."""
    h, w = scoremap.shape
    return [np.asarray([wsol_box(c, h, w) for c in cs] if len(cs) else [[0, 0, 0, 0]])
            for cs in wsol_contours(scoremap, thresholds)]


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


def ring_maps(b: int, size: int) -> torch.Tensor:
    """Rings (holes at most thresholds), a blob inside some rings, and speckle: many contours per τ."""
    g = torch.Generator().manual_seed(7)
    yy, xx = torch.meshgrid(torch.arange(size.__float__()), torch.arange(size.__float__()), indexing="ij")
    maps = 0.15 * torch.rand(b, size, size, generator=g)
    for i in range(b):
        cy, cx = torch.rand(2, generator=g) * (size - 24) + 12
        r = torch.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        maps[i] += torch.exp(-((r - 7.0) ** 2) / 4.0)  # a ring of radius 7
        if i % 2:
            maps[i] += 0.6 * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 3.0)  # a blob in its hole
        oy, ox = torch.rand(2, generator=g) * (size - 8) + 4
        maps[i] += 0.8 * torch.exp(-((yy - oy) ** 2 + (xx - ox) ** 2) / 8.0)
    return maps


def test_max_box_acc_v2_matches_wsolevaluation_multi_contour():
    """Every contour's box counts (components and holes, as OpenCV's RETR_TREE finds them), at IoU 30/50/70.
    Largest-component boxes (V1's) or components without holes give other IoUs on these ring maps."""
    b, size, t = 8, 48, 100
    maps = ring_maps(b, size)
    g = torch.Generator().manual_seed(2)
    boxes = [torch.cat([torch.randint(0, 24, (2, 2), generator=g), torch.randint(24, 47, (2, 2), generator=g)], 1)
             .float() for _ in range(b)]
    for i in range(0, b, 3):  # some true boxes hug a ring's hole: only the hole contour's box matches them
        m = maps[i]
        yy, xx = torch.nonzero(m > 0.8 * m.max(), as_tuple=True)
        boxes[i] = torch.cat([boxes[i], torch.tensor([[xx.min() + 3, yy.min() + 3, xx.max() - 3, yy.max() - 3]]).float()])
    res = METRICS.build("max_box_acc_v2", thresholds=t)(None, None, maps, None, annotation={"boxes": boxes})
    thresholds = np.arange(0, 1, 0.01)
    ref = []
    for i in range(b):
        m = maps[i].numpy()
        m = (m - m.min()) / (m.max() - m.min())
        ref.append([wsol_iou(p, boxes[i].numpy()).max() for p in wsol_boxes_multi(m.astype(np.float32), thresholds)])
    ref = np.asarray(ref)
    worst = np.abs(res.curves.numpy() - ref).max()
    v1 = METRICS.build("max_box_acc", thresholds=t)(None, None, maps, None, annotation={"boxes": boxes})
    print(f"max_box_acc_v2 vs wsolevaluation multi-contour: worst abs IoU diff {worst:.1e}; best IoU V2 − V1 up to "
          f"{(res.curves.numpy().max(1) - v1.extras['best_iou'].numpy()).max():.3f}")
    assert worst < 1e-6
    assert (ref > res.curves.numpy() + 1e-3).sum() == 0
    hits = [(ref >= d).mean(1) for d in (0.3, 0.5, 0.7)]
    assert np.allclose(res.values.numpy(), np.mean(hits, 0), atol=1e-6)
    assert (res.curves.numpy().max(1) > v1.extras["best_iou"].numpy() + 0.05).any()  # other contours matter here
    from xaibench.results.summary import CURVE_AGGREGATES

    v2_dataset = CURVE_AGGREGATES["mean_over_iou_of_max_over_thresholds"][0](res.curves.numpy(), {"ious": [0.3, 0.5, 0.7]})
    assert v2_dataset == pytest.approx(np.mean([(ref >= d).mean(0).max() for d in (0.3, 0.5, 0.7)]))


def test_max_box_acc_v2_skips_only_contours_that_cannot_win():
    """On noise maps (thousands of speckle contours per threshold) the area bound skips most of them,
    and every best IoU is what all the contours give (a bound that were too tight, e.g. w + h ≤ k + 1 for
    8-connected components, would drop diagonal ones that can win)."""
    from xaibench.metrics.wsol import BoxSweep, all_contour_boxes_wsol, threshold_sweep, wsol_iou

    g = torch.Generator().manual_seed(3)
    maps = torch.rand(3, 40, 40, generator=g)
    boxes = [torch.tensor([[2.0, 3.0, 9.0, 6.0]]), torch.tensor([[0.0, 0.0, 39.0, 39.0]]), torch.tensor([[5.0, 5.0, 30.0, 12.0]])]
    res = METRICS.build("max_box_acc_v2", thresholds=50)(None, None, maps, None, annotation={"boxes": boxes})
    (_, planes), = threshold_sweep(maps, 50, 4)
    every, plane = all_contour_boxes_wsol(planes)
    needed = BoxSweep(thresholds=50).needed_areas(planes, boxes)
    kept, _ = all_contour_boxes_wsol(planes, needed)
    assert len(kept) < 0.6 * len(every)  # much of the speckle is skipped
    for i in range(3):
        mine = (plane >= i * 50) & (plane < (i + 1) * 50)
        iou = wsol_iou(torch.from_numpy(every[mine]), boxes[i]).amax(1)
        best = torch.zeros(50, dtype=torch.float64).scatter_reduce(0, torch.from_numpy(plane[mine] - i * 50), iou, "amax")
        assert torch.allclose(res.curves[i].double(), best, atol=1e-6)

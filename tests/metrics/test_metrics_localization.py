"""Localization metrics: known answers (map = mask), tolerance geometry, largest component box,
and agreement with Quantus (PointingGame, RelevanceMassAccuracy, RelevanceRankAccuracy)."""

import types

import numpy as np
import pytest
import torch
from metric_models import documented_permutation, runner_seed

from xaibench.errors import ConfigError, DataError
from xaibench.metrics.base import METRICS
from xaibench.metrics.localization import boxes_to_mask, class_balanced_mean

gen = torch.Generator().manual_seed(0)


def run(name, maps, annotation, **params):
    return METRICS.build(name, **params)(None, None, maps, torch.zeros(maps.shape[0]).long(), annotation=annotation)


def quantus_metric(name, **kw):
    import quantus  # slow to import (over a minute on a loaded machine): only in the slow tests

    return getattr(quantus, name)(disable_warnings=True, **kw)


def quantus_scores(metric, maps, masks):
    b, h, w = maps.shape
    return np.asarray(metric(model=None, x_batch=np.zeros((b, 3, h, w), np.float32), y_batch=np.zeros(b, int),
                             a_batch=maps[:, None].numpy(), s_batch=masks[:, None].float().numpy(),
                             channel_first=True), dtype=float)


def test_map_equal_to_mask_scores_one():
    mask = torch.zeros(2, 32, 32, dtype=torch.bool)
    mask[0, 4:10, 20:30] = True
    mask[1, 15:31, 0:5] = True
    ann = {"mask": mask, "boxes": [torch.tensor([[20.0, 4, 30, 10]]), torch.tensor([[0.0, 15, 5, 31]])]}
    maps = mask.float()
    for name in ["pointing_game", "energy_pointing_game", "relevance_mass_accuracy", "relevance_rank_accuracy"]:
        assert torch.equal(run(name, maps, ann).values, torch.ones(2)), name
    # boxes only: the union of boxes is the region, same answer
    assert torch.equal(run("energy_pointing_game", maps, {"boxes": ann["boxes"]}).values, torch.ones(2))
    assert torch.allclose(run("box_iou", maps, ann).values, torch.ones(2))


def test_boxes_to_mask_uses_pixel_centres():
    m = boxes_to_mask([torch.tensor([[1.0, 2.0, 3.0, 5.0], [6.0, 6.0, 7.0, 7.0]]), None], 8, 8, torch.device("cpu"))
    expected = torch.zeros(2, 8, 8, dtype=torch.bool)
    expected[0, 2:5, 1:3] = True
    expected[0, 6, 6] = True
    assert torch.equal(m, expected)


@pytest.mark.parametrize("size,dist,tolerance,hit", [
    (224, 10, 15, 1), (224, 14, 15, 1), (224, 15, 15, 0), (224, 10, 0, 0), (112, 7, 15, 1), (112, 8, 15, 0),
])
def test_pointing_game_tolerance_scales_with_image_size(size, dist, tolerance, hit):
    mask = torch.zeros(1, size, size, dtype=torch.bool)
    mask[0, :, : size // 2] = True  # left half: columns < size/2
    maps = torch.zeros(1, size, size)
    maps[0, size // 3, size // 2 - 1 + dist] = 1.0  # `dist` px right of the last column inside
    res = run("pointing_game", maps, {"mask": mask}, tolerance=tolerance)
    assert res.values.item() == hit
    assert res.extras["hit_strict"].item() == 0


@pytest.mark.slow
def test_pointing_game_agrees_with_quantus_strict():
    maps = torch.rand(16, 12, 12, generator=gen)
    masks = torch.rand(16, 12, 12, generator=gen) > 0.6
    ours = run("pointing_game", maps, {"mask": masks}, tolerance=0).values.numpy()
    assert np.array_equal(ours, quantus_scores(quantus_metric("PointingGame"), maps, masks))
    assert 0 < ours.mean() < 1


def plateau(b: int = 64):
    """`b` identical maps with a plateau of 99 tied maxima, and masks of the left 20 % of the image."""
    maps = torch.full((b, 10, 10), 0.5)
    maps[:, 9, 9] = 0.1  # (Quantus refuses fully constant maps)
    masks = torch.zeros(b, 10, 10, dtype=torch.bool)
    masks[:, :, :2] = True
    return maps, masks


def first_tied_pixel(key, seed: int = 0) -> int:
    """The plateau pixel the documented tie-break picks for an image keyed `key`."""
    perm = documented_permutation(100, key, seed)
    return int(perm[perm != 99][0])


def test_pointing_game_ties_are_broken_independently_per_image():
    maps, masks = plateau()
    ours = run("pointing_game", maps, {"mask": masks}, tolerance=0).values
    # without runner seeds, image i is keyed by its position: 64 independent draws, not one coin flip
    expected = torch.tensor([float(masks[i].flatten()[first_tied_pixel(i)]) for i in range(64)])
    assert torch.equal(ours, expected)
    assert len({first_tied_pixel(i) for i in range(64)}) > 40
    assert 0.1 < ours.mean().item() < 0.35  # 20/99 of the tied pixels are inside
    # with the runner's per-image seeds (run seed, image id): the same pixel alone and in any batch
    seeds = torch.tensor([runner_seed(0, f"img_{i}") for i in range(64)])
    metric = METRICS.build("pointing_game", tolerance=0)
    batch = metric(None, None, maps, torch.zeros(64).long(), annotation={"mask": masks}, seeds=seeds).values
    assert torch.equal(batch, torch.tensor([float(masks[0].flatten()[first_tied_pixel(int(s))]) for s in seeds]))
    for i in (0, 17, 63):
        alone = metric(None, None, maps[i:i + 1], torch.zeros(1).long(), annotation={"mask": masks[i:i + 1]},
                       seeds=seeds[i:i + 1]).values
        assert alone.item() == batch[i].item()
    # the metric's own `seed` changes every image's draw
    other = METRICS.build("pointing_game", tolerance=0, seed=1)(None, None, maps, torch.zeros(64).long(),
                                                               annotation={"mask": masks}, seeds=seeds).values
    assert torch.equal(other, torch.tensor([float(masks[0].flatten()[first_tied_pixel(int(s), 1)]) for s in seeds]))


@pytest.mark.slow
def test_pointing_game_ties_documented_difference_from_quantus():
    # Quantus counts a hit when ANY pixel tied at the maximum is inside: a flat map always "hits".
    # Here ties are broken per image by its seeded permutation: one point, inside with chance 20/99.
    maps, masks = plateau()
    theirs = quantus_scores(quantus_metric("PointingGame"), maps, masks)
    ours = run("pointing_game", maps, {"mask": masks}, tolerance=0).values
    assert theirs.mean() == 1.0
    assert ours.mean().item() < 0.5


@pytest.mark.slow
def test_relevance_mass_and_rank_agree_with_quantus():
    maps = torch.rand(8, 12, 12, generator=gen)  # non-negative and tie-free
    masks = torch.rand(8, 12, 12, generator=gen) > 0.5
    for name, cls in [("relevance_mass_accuracy", "RelevanceMassAccuracy"),
                      ("relevance_rank_accuracy", "RelevanceRankAccuracy")]:
        ours = run(name, maps, {"mask": masks}).values.numpy()
        assert np.allclose(ours, quantus_scores(quantus_metric(cls), maps, masks), atol=1e-6), name


@pytest.mark.slow
def test_relevance_mass_counts_positive_relevance_only_unlike_quantus():
    # Arras et al. 2022 define the mass accuracy on positive relevance; Quantus sums signed values
    maps = torch.tensor([[[2.0, -1.0], [1.0, 0.0]]])
    mask = torch.tensor([[[True, True], [False, False]]])
    assert run("relevance_mass_accuracy", maps, {"mask": mask}).values.item() == pytest.approx(2 / 3)
    signed = quantus_scores(quantus_metric("RelevanceMassAccuracy", normalise=False), maps, mask)
    assert signed[0] == pytest.approx(1 / 2)


def test_energy_pointing_game_known_value():
    # Ŝ = minmax(S): an offset or a scale of the map changes nothing
    mask = torch.tensor([[[True, True], [False, False]]])
    for maps in (torch.tensor([[[0.0, 1.0], [0.5, 0.5]]]), torch.tensor([[[3.0, 5.0], [4.0, 4.0]]])):
        assert run("energy_pointing_game", maps, {"mask": mask}).values.item() == pytest.approx(1 / 2)
    maps = torch.tensor([[[2.0, 3.0], [1.0, 1.0]]])  # Ŝ = [[0.5, 1], [0, 0]]: all the energy inside (S: 5/7)
    assert run("energy_pointing_game", maps, {"mask": mask}).values.item() == pytest.approx(1.0)


def test_failed_and_constant_maps_score_as_documented():
    """docs/metrics.md "Failed maps": a NaN (or inf) map is not scored (NaN, skipped); a constant map
    (all-zero included) has no peak and no box, a miss for every localization metric, even where
    the region covers most of the image. (Until issue 16 a NaN map was scored as the all-zero map
    and box IoU gave a constant map the whole frame.)"""
    maps = torch.stack([torch.full((8, 8), float("nan")), torch.full((8, 8), 3.0), torch.zeros(8, 8),
                        torch.full((8, 8), -1.0), torch.zeros(8, 8)])
    maps[4, 0, 0] = float("inf")
    mask = torch.zeros(5, 8, 8, dtype=torch.bool)
    mask[:, 1:8, 0:7] = True  # 49 of 64 pixels: the whole frame would be a box hit (IoU 0.77)
    ann = {"mask": mask, "boxes": [torch.tensor([[0.0, 1, 7, 8]])] * 5}
    nan = float("nan")
    for name in ("pointing_game", "energy_pointing_game", "relevance_mass_accuracy", "relevance_rank_accuracy",
                 "box_iou"):
        res = run(name, maps, ann)
        torch.testing.assert_close(res.values, torch.tensor([nan, 0.0, 0.0, 0.0, nan]), equal_nan=True, msg=name)
        assert res.skipped.tolist() == [True, False, False, False, True], name
        for extra, v in res.extras.items():
            torch.testing.assert_close(v, torch.tensor([nan, 0.0, 0.0, 0.0, nan]), equal_nan=True, msg=extra)
    one_peak = torch.zeros(1, 8, 8)
    one_peak[0, 4, 3] = 1.0  # a single peak inside: a hit for all of them
    for name in ("pointing_game", "relevance_mass_accuracy", "box_iou"):
        assert run(name, one_peak, {"mask": mask[:1], "boxes": ann["boxes"][:1]}).values.item() > 0, name


def test_finite_rows_keep_their_batch_keys_next_to_a_failed_map():
    """Scoring the finite maps of a batch with a NaN map gives them the values they get without it."""
    g = torch.Generator().manual_seed(3)
    maps = torch.randint(0, 3, (4, 8, 8), generator=g).float()  # many ties: the permutation matters
    mask = torch.rand(4, 8, 8, generator=g) > 0.5
    broken = maps.clone()
    broken[1, 2, 2] = float("nan")
    for name in ("pointing_game", "relevance_rank_accuracy"):
        whole = run(name, maps, {"mask": mask}).values
        part = run(name, broken, {"mask": mask}).values
        assert torch.isnan(part[1]) and torch.equal(part[[0, 2, 3]], whole[[0, 2, 3]]), name


def test_box_iou_largest_component_and_threshold():
    maps = torch.zeros(1, 20, 20)
    maps[0, 2:8, 2:12] = 1.0  # 60 px component
    maps[0, 12:16, 14:18] = 0.5  # 16 px component, disconnected
    maps[0, 0, 19] = 0.1  # below 0.15·max
    gt = [torch.tensor([[2.0, 2.0, 12.0, 10.0], [14.0, 12.0, 18.0, 16.0]])]
    res = run("box_iou", maps, {"boxes": gt})
    assert res.values.item() == pytest.approx(60 / 80)  # box 2..12 × 2..8 inside gt 2..12 × 2..10
    assert res.extras["hit"].item() == 1.0
    # above τ = 0.6 only the first component is left; at τ=0.05 the corner pixel joins nothing
    assert run("box_iou", maps, {"boxes": gt}, threshold=0.6).values.item() == pytest.approx(60 / 80)
    # the largest component of the second image is the small square: IoU 1 with the second gt box
    maps2 = torch.zeros(1, 20, 20)
    maps2[0, 12:16, 14:18] = 1.0
    assert run("box_iou", maps2, {"boxes": gt}).values.item() == pytest.approx(1.0)


def test_missing_annotation_raises():
    with pytest.raises(DataError, match="boxes"):
        run("pointing_game", torch.rand(1, 4, 4), {})
    with pytest.raises(DataError, match="mask"):
        run("relevance_mass_accuracy", torch.rand(1, 4, 4), {"boxes": [torch.zeros(1, 4)]})


def test_class_balanced_mean():
    hits = torch.tensor([1.0, 1.0, 1.0, 0.0, float("nan")])
    classes = torch.tensor([0, 0, 0, 1, 1])
    assert class_balanced_mean(hits, classes).item() == pytest.approx(0.5)


def test_one_seed_per_image_is_required():
    from xaibench.errors import ConfigError

    with pytest.raises(ConfigError, match="2 per-image seeds for 3 maps"):
        METRICS.build("pointing_game")(None, None, torch.rand(3, 4, 4), torch.zeros(3).long(),
                                       annotation={"mask": torch.ones(3, 4, 4, dtype=torch.bool)}, seeds=torch.tensor([1, 2]))


def peak_at(points, size=16):
    """(B,H,W) maps, each with a single peak at (row, col)."""
    maps = torch.zeros(len(points), size, size)
    for i, (r, c) in enumerate(points):
        maps[i, r, c] = 1.0
    return maps


def test_pointing_game_skips_an_empty_region_and_a_target_without_boxes():
    """TorchRay: no region, no game — skipped (NaN, counted), never a miss. With `labels` the boxes are
    the label's, so a target (e.g. the prediction) of another class has none; with `box_labels`
    (VOC) the target's own boxes are used."""
    maps = peak_at([(4, 4), (4, 4), (4, 4), (12, 12)])
    box_a = torch.tensor([[2.0, 2, 7, 7]])  # around (4, 4)
    box_b = torch.tensor([[10.0, 10, 15, 15]])  # around (12, 12)
    ann = {"boxes": [box_a, torch.zeros(0, 4), box_a, torch.cat([box_a, box_b])],
           "labels": torch.tensor([1, 1, 1, 2]), "box_labels": [None, None, None, torch.tensor([2, 3])]}
    target = torch.tensor([1, 1, 0, 3])  # image 2: another class than its label; image 3: its second class
    nan = float("nan")
    for name in ("pointing_game", "energy_pointing_game", "box_iou"):
        res = METRICS.build(name, **({"tolerance": 0} if name == "pointing_game" else {}))(
            None, None, maps, target, annotation=ann)
        assert res.skipped.tolist() == [False, True, True, False], name
        assert torch.isnan(res.values[[1, 2]]).all() and not torch.isnan(res.values[[0, 3]]).any(), name
    res = METRICS.build("pointing_game", tolerance=0)(None, None, maps, target, annotation=ann)
    torch.testing.assert_close(res.values, torch.tensor([1.0, nan, nan, 1.0]), equal_nan=True)
    miss = METRICS.build("pointing_game", tolerance=0)(None, None, maps[3:], torch.tensor([2]),
                                                       annotation={k: v[3:] for k, v in ann.items()})
    assert miss.values.item() == 0.0  # class 2's box is at (4, 4), the peak at (12, 12)
    # without labels (plain Python use) every box counts, as before
    plain = METRICS.build("pointing_game", tolerance=0)(None, None, maps[2:3], torch.tensor([0]),
                                                        annotation={"boxes": [box_a]})
    assert plain.values.item() == 1.0


def test_region_metrics_use_masks_of_mask_only_datasets():
    """A dataset with masks and no boxes is not skipped by the metrics that can use a mask."""
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, 2:5, 2:5] = True
    for name in ("pointing_game", "energy_pointing_game"):
        assert METRICS.build(name).available([None, None], masks).tolist() == [True, False], name
        assert METRICS.build(name, region="boxes").available([None, None], masks).tolist() == [False, False], name
    assert METRICS.build("box_iou").available([None, None], masks).tolist() == [False, False]


def test_pointing_game_multiclass_scores_every_annotated_class():
    """`classes: annotated` (TorchRay's multi-class protocol): each annotated class of an image is
    explained and scored against its own boxes; the curve holds the hit per class, NaN where the
    class is absent; TorchRay's figure (summary.csv's `:dataset` row) is the mean over classes of their hit rates."""
    from xaibench.results.summary import mean_over_classes_of_hit_rate

    boxes = {0: torch.tensor([[0.0, 0, 4, 4]]), 1: torch.tensor([[12.0, 12, 16, 16]]), 2: torch.tensor([[0.0, 12, 4, 16]])}
    centre = {0: (2, 2), 1: (14, 14), 2: (14, 2)}
    calls = []

    def explain(model, x, target):  # points at class 0 and 1 correctly, at class 2 wrongly (its peak at class 1's box)
        calls.append(target.tolist())
        return peak_at([centre[1] if c == 2 else centre[c] for c in target.tolist()])

    model = types.SimpleNamespace(num_classes=4)
    ann = {"boxes": [torch.cat([boxes[0], boxes[2]]), torch.cat([boxes[1], boxes[2]]), boxes[1]],
           "box_labels": [torch.tensor([0, 2]), torch.tensor([1, 2]), torch.tensor([1])], "labels": torch.tensor([0, 1, 1])}
    x = torch.zeros(3, 3, 16, 16)
    res = METRICS.build("pointing_game", classes="annotated", tolerance=0)(
        model, x, peak_at([(0, 0)] * 3), torch.tensor([0, 1, 1]), annotation=ann, explain=explain)
    assert calls == [[0, 2, 1, 2, 1]]  # one batched call for every (image, class) pair
    nan = float("nan")
    expected = torch.tensor([[1.0, nan, 0.0, nan], [nan, 1.0, 0.0, nan], [nan, 1.0, nan, nan]])
    torch.testing.assert_close(res.curves, expected, equal_nan=True)
    torch.testing.assert_close(res.values, torch.tensor([0.5, 0.5, 1.0]))
    assert mean_over_classes_of_hit_rate(res.curves.numpy(), {}) == pytest.approx((1 + 1 + 0) / 3)
    assert METRICS.build("pointing_game", classes="annotated").dataset_aggregate()["name"] == "mean_over_classes_of_hit_rate"
    assert METRICS.build("pointing_game").dataset_aggregate() is None
    with pytest.raises(ConfigError, match="explain"):
        METRICS.build("pointing_game", classes="annotated")(model, x, peak_at([(0, 0)] * 3), torch.tensor([0, 1, 1]),
                                                            annotation=ann)


def test_multiclass_pointing_game_dataset_row_is_torchray_mean_over_classes():
    """summary.csv's `pointing_game:dataset` row (classes: annotated) is TorchRay's accuracy: the mean
    over classes of each class's hit rate — 0.5 here, where the mean over images is 2/3; a row with
    no class scored (all NaN) is left out of n."""
    from xaibench.results.summary import dataset_rows

    nan = float("nan")
    curves = np.array([[1.0, nan], [1.0, nan], [nan, 0.0], [nan, nan]])
    spec = METRICS.build("pointing_game", classes="annotated").dataset_aggregate()
    (row,) = dataset_rows({("gradcam", "pointing_game"): curves},
                          {"pointing_game": {"higher_is_better": True, "dataset": spec}})
    assert row["metric"] == "pointing_game:dataset" and row["n"] == 3
    assert row["mean"] == pytest.approx(0.5)
    assert "TorchRay" in row["protocol"]

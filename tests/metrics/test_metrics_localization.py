"""Localization metrics: known answers (map = mask), tolerance geometry, largest component box,
and agreement with Quantus (PointingGame, RelevanceMassAccuracy, RelevanceRankAccuracy)."""

import numpy as np
import pytest
import torch
from metric_models import documented_permutation, runner_seed

from xaibench.errors import DataError
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


def test_nan_and_constant_maps_score_as_documented():
    """docs/metrics.md "Degenerate maps": a NaN map is the all-zero map; a constant map's maximum and
    top pixels are its tie permutation's first ones."""
    maps = torch.stack([torch.full((8, 8), float("nan")), torch.full((8, 8), 3.0), torch.zeros(8, 8),
                        torch.full((8, 8), -1.0)])
    mask = torch.zeros(4, 8, 8, dtype=torch.bool)
    mask[:, 2:5, 2:6] = True  # 12 pixels, the same region as the box
    ann = {"mask": mask, "boxes": [torch.tensor([[2.0, 2, 6, 5]])] * 4}
    inside = mask[0].flatten()
    first = [documented_permutation(64, i) for i in range(4)]  # keyed by the batch position
    expected = {
        "pointing_game": [float(inside[p[0]]) for p in first],
        "energy_pointing_game": [0.0] * 4,
        "relevance_mass_accuracy": [0.0, 12 / 64, 0.0, 0.0],
        "relevance_rank_accuracy": [inside[p[:12]].sum().item() / 12 for p in first],
        "box_iou": [12 / 64, 12 / 64, 12 / 64, 0.0],  # S ≥ 0: the whole frame is one component
    }
    for name, values in expected.items():
        got = run(name, maps, ann).values
        torch.testing.assert_close(got, torch.tensor(values), msg=name)
        same_seed = METRICS.build(name)(None, None, maps[[0, 2]], torch.zeros(2).long(), seeds=torch.tensor([7, 7]),
                                        annotation={"mask": mask[:2], "boxes": ann["boxes"][:2]}).values
        assert same_seed[0].item() == same_seed[1].item(), name  # NaN map = zero map, tie for tie


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

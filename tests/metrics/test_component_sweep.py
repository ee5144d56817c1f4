"""The union-find sweep of MaxBoxAcc gives, at every cut, the box the dense labelling of that cut gives."""

import numpy as np
import pytest
import torch

from xaibench.metrics.component_sweep import (
    dense_cuts,
    graph_labels,
    largest_component_boxes_by_cut,
    largest_component_boxes_wsol,
    union_find_boxes,
)


def dense_boxes(quant: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Each (map, cut) plane labelled on its own."""
    planes = quant[:, None] > cuts[:, :, None, None].astype(np.uint8)
    n, t = cuts.shape
    return largest_component_boxes_wsol(planes.reshape(n * t, *quant.shape[1:])).reshape(n, t, 4)


def wsol_cuts(quant: np.ndarray, thresholds: int) -> np.ndarray:
    return np.floor(np.arange(0, 1, 1 / thresholds)[None] * quant.reshape(len(quant), -1).max(1)[:, None]
                    .astype(float)).astype(np.int64)


def maps_of(kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "noise":  # many small components at every level
        m = np.abs(rng.normal(size=(6, 33, 29)))
    elif kind == "smooth":  # few components that merge as the cut falls
        m = torch.nn.functional.avg_pool2d(torch.from_numpy(rng.random((6, 1, 40, 40))), 7, 1, 3)[:, 0].numpy()
    elif kind == "ties":  # four values: components of equal size, ties broken by the first pixel
        m = rng.integers(0, 4, (8, 9, 11)).astype(float)
    elif kind == "checker":  # diagonal-only contacts: 8-connectivity joins them, 4-connectivity would not
        yy, xx = np.indices((12, 12))
        m = np.stack([((yy + xx) % 2) * (1 + k + yy) for k in range(3)]).astype(float)
    else:  # thin and degenerate shapes, an empty map
        m = np.stack([rng.random((1, 17))[0][None].repeat(3, 0), np.zeros((3, 17)), rng.random((3, 17))])
    m = m - m.min((1, 2), keepdims=True)
    span = m.max((1, 2), keepdims=True)
    return (np.divide(m, span, out=np.zeros_like(m), where=span > 0) * 255).astype(np.uint8)


@pytest.mark.parametrize("kind", ["noise", "smooth", "ties", "checker", "shapes"])
@pytest.mark.parametrize("dense_share", [0.0, 0.01, np.inf])
def test_every_cut_gets_the_box_of_its_own_labelling(kind, dense_share):
    quant = maps_of(kind, np.random.default_rng(len(kind)))
    cuts = wsol_cuts(quant, 100)
    expected = dense_boxes(quant, cuts)
    if kind == "noise" and dense_share == 0.01:  # both paths in one call
        assert 0 < dense_cuts(quant, cuts, dense_share).mean() < 1
    got = largest_component_boxes_by_cut(quant, cuts, dense_share=dense_share, dense_planes=7)
    assert np.array_equal(got, expected)
    assert len(np.unique(expected.reshape(-1, 4), axis=0)) > 2  # the boxes change along the sweep


def test_the_union_find_alone_and_cuts_it_skips():
    rng = np.random.default_rng(3)
    quant = maps_of("noise", rng)
    cuts = rng.integers(0, 200, (len(quant), 40))
    cuts[1] = -1  # a map with no cut to find
    cuts[2, ::3] = -1
    got = union_find_boxes(quant, cuts)
    expected = dense_boxes(quant, cuts.clip(0))
    expected[cuts < 0] = 0
    assert np.array_equal(got, expected)


def test_equal_sizes_go_to_the_component_whose_first_pixel_comes_first():
    quant = np.zeros((1, 6, 8), dtype=np.uint8)
    quant[0, 3:5, 0:2] = 200  # 4 pixels, first at raster index 24
    quant[0, 0:2, 6:8] = 100  # 4 pixels, first at raster index 6: wins at cut 0, absent at cut 150
    got = largest_component_boxes_by_cut(quant, np.array([[0, 150]]), dense_share=np.inf)
    assert got[0].tolist() == [[6, 0, 7, 2], [0, 3, 2, 5]]


def test_graph_labels_join_exactly_the_connected_nodes():
    rng = np.random.default_rng(0)
    for edges in (30, 5000):  # the pointer-jumping path and scipy's
        k = edges
        ia, ib = rng.integers(0, k, edges), rng.integers(0, k, edges)
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        _, expected = connected_components(coo_matrix((np.ones(edges), (ia, ib)), shape=(k, k)), directed=False)
        label = graph_labels(k, ia, ib)
        pairs = np.unique(np.stack([expected, label], 1), axis=0)
        assert len(pairs) == len(np.unique(expected)) == len(np.unique(label))


def test_cuts_outside_the_uint8_range_are_refused():
    with pytest.raises(ValueError, match="0..254"):
        largest_component_boxes_by_cut(np.zeros((1, 4, 4), dtype=np.uint8), np.array([[255]]))


def test_noisy_maps_label_their_crowded_low_cuts_densely_and_smooth_maps_none():
    rng = np.random.default_rng(0)
    noisy = (np.abs(rng.normal(size=(1, 64, 64))) ** 3 * 40).clip(0, 255).astype(np.uint8)  # most pixels low
    ramp = np.tile(np.arange(256, dtype=np.uint8), (1, 64, 1))[:, :, ::4]  # each level adds the same pixels
    for quant, dense in ((noisy, True), (ramp, False)):
        chosen = dense_cuts(quant, wsol_cuts(quant, 100), 0.05)
        assert chosen.any() == dense
        assert not chosen[0, -1]  # the top cut, with the fewest pixels, is never the dense one

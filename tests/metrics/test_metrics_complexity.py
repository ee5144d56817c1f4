"""Sparseness (Gini) and complexity (entropy): closed forms and agreement with Quantus."""

import math

import numpy as np
import pytest
import torch

from xaibench.metrics.base import METRICS


def run(name, maps):
    return METRICS.build(name)(None, None, maps, torch.zeros(maps.shape[0]).long()).values


def quantus_scores(metric, maps):
    b, h, w = maps.shape
    return np.asarray(metric(model=None, x_batch=np.zeros((b, 3, h, w), np.float32), y_batch=np.zeros(b, int),
                             a_batch=maps[:, None].numpy(), channel_first=True), dtype=float)


def test_uniform_and_one_hot_closed_forms():
    n = 10 * 10
    one_hot = torch.zeros(1, 10, 10)
    one_hot[0, 3, 7] = -5.0
    maps = torch.cat([torch.full((1, 10, 10), 0.3), one_hot, torch.zeros(1, 10, 10)])
    assert torch.allclose(run("sparseness", maps), torch.tensor([0.0, (n - 1) / n, 0.0]), atol=1e-6)
    assert torch.allclose(run("complexity", maps), torch.tensor([math.log(n), 0.0, math.log(n)]), atol=1e-5)


def test_nan_maps_score_as_the_all_zero_map():
    maps = torch.full((1, 6, 6), float("nan"))  # docs/metrics.md: sparseness 0, complexity ln(H·W)
    assert run("sparseness", maps).item() == 0.0
    assert run("complexity", maps).item() == pytest.approx(math.log(36), abs=1e-6)
    partly = torch.rand(1, 6, 6, generator=torch.Generator().manual_seed(1))
    zeroed = partly.clone()
    partly[0, 2, 3], zeroed[0, 2, 3] = float("nan"), 0.0  # a NaN pixel counts as 0
    for name in ("sparseness", "complexity"):
        assert run(name, partly).item() == pytest.approx(run(name, zeroed).item(), abs=1e-7), name


@pytest.mark.slow
def test_agreement_with_quantus():
    import quantus  # slow to import: only in the slow tests

    g = torch.Generator().manual_seed(0)
    maps = torch.randn(6, 12, 12, generator=g) * torch.rand(6, 1, 1, generator=g)
    maps[0] = maps[0].clamp_min(0) ** 4  # a sparse one
    # Quantus divides |S| by the batch's maximum and adds 1e-7 before the Gini index: the same formula
    # on that shifted map agrees to fp precision, and the shift itself moves the index by < 1e-4 here
    theirs = quantus_scores(quantus.Sparseness(disable_warnings=True), maps)
    a = maps.abs()
    shifted = a / a.max() + 1e-7
    assert np.allclose(run("sparseness", shifted).numpy(), theirs, atol=1e-6)
    assert np.allclose(run("sparseness", maps).numpy(), theirs, atol=1e-4)
    theirs = quantus_scores(quantus.Complexity(disable_warnings=True), maps)
    assert np.allclose(run("complexity", maps).numpy(), theirs, atol=1e-5)
    assert not np.allclose(theirs, theirs[0])

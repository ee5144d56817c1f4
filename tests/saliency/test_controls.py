"""The control explainers (saliency/controls.py) against known answers: scikit-image's Sobel,
a hand-computed Gaussian, per-image seeded noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import xaibench as xb
from xaibench.saliency import EXPLAINERS


@pytest.fixture(scope="module")
def model():
    return xb.load_model("testnet:tiny")


def test_only_the_three_controls_are_marked_control():
    marked = {n for n in EXPLAINERS.names() if getattr(EXPLAINERS.get(n).obj, "control", False)}
    assert marked == {"random", "center", "edges"}


def test_edges_is_scikit_image_sobel_of_the_grey_pixel_image(model):
    from skimage.filters import sobel

    pixels = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    maps = EXPLAINERS.build("edges")(model, model.normalize(pixels), torch.tensor([0, 1]))
    for i in range(2):
        ref = sobel(pixels[i].mean(0).double().numpy())  # pixel space, not the normalized input
        np.testing.assert_allclose(maps[i].numpy(), ref, atol=1e-6)


def test_center_is_the_hand_computed_gaussian(model):
    maps = EXPLAINERS.build("center", sigma=0.2)(model, torch.zeros(3, 3, 5, 5), torch.zeros(3, dtype=torch.long))
    # σ = 0.2 · 5 = 1 px around (2, 2): value exp(−r²/2)
    assert maps.shape == (3, 5, 5) and torch.equal(maps[0], maps[2])
    assert maps[0, 2, 2].item() == pytest.approx(1.0)
    assert maps[0, 0, 2].item() == pytest.approx(math.exp(-2.0), rel=1e-6)  # r² = 4
    assert maps[0, 0, 0].item() == pytest.approx(math.exp(-4.0), rel=1e-6)  # r² = 8
    wide = EXPLAINERS.build("center", sigma=0.4)(model, torch.zeros(1, 3, 5, 5), torch.zeros(1, dtype=torch.long))
    assert wide[0, 0, 2].item() == pytest.approx(math.exp(-0.5), rel=1e-6)  # σ = 2
    with pytest.raises(xb.errors.ConfigError, match="sigma"):
        EXPLAINERS.build("center", sigma=0.0)


def test_random_is_uniform_noise_seeded_per_image_not_per_batch(model):
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    t = torch.zeros(4, dtype=torch.long)
    explainer = EXPLAINERS.build("random")
    maps = explainer(model, x, t)
    assert torch.equal(explainer(model, x[[2, 0]], t[:2]), maps[[2, 0]])  # another batch, same noise per image
    assert not torch.equal(maps[0], maps[1])
    assert not torch.equal(EXPLAINERS.build("random", seed=1)(model, x, t), maps)
    assert 0 <= maps.min() and maps.max() < 1
    assert abs(maps.mean().item() - 0.5) < 0.02 and abs(maps.var().item() - 1 / 12) < 0.005  # U[0,1)


def test_controls_ignore_the_model(model):
    x = torch.randn(2, 3, 32, 32)
    t = torch.tensor([1, 2])
    for name in ("random", "center", "edges"):
        before = model.counter.snapshot()
        maps = EXPLAINERS.build(name)(model, x, t)
        assert maps.shape == (2, 32, 32) and maps.dtype == torch.float32
        assert torch.equal(maps, EXPLAINERS.build(name)(model, x, torch.tensor([5, 7])))  # target plays no part
        assert not any(model.counter.since(before).values())

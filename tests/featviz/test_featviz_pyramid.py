"""Pyramids (Burt & Adelson 1983) and the spectral share of docs/methods.md §Pyramid activation maximization: exact
reconstruction, known answers on constants and sinusoids, and the low-frequency lift."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xaibench.errors import ConfigError
from xaibench.featviz import (
    gaussian_pyramid,
    laplacian_pyramid,
    laplacian_reconstruct,
    low_frequency_share,
    precondition,
)
from xaibench.featviz.pyramid import expand, expand_to, reduce


@pytest.mark.parametrize("levels", [1, 2, 4, 5])
@pytest.mark.parametrize("size", [(64, 64), (37, 50)])
def test_laplacian_pyramid_reconstructs_exactly(levels, size):
    x = torch.randn(2, 3, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(levels))
    bands = laplacian_pyramid(x, levels)
    assert len(bands) == levels
    assert [tuple(b.shape[-2:]) for b in bands][: 2] == [size, ((size[0] + 1) // 2, (size[1] + 1) // 2)][:levels]
    assert torch.allclose(laplacian_reconstruct(bands), x, atol=1e-12, rtol=0)
    x32 = x.float()
    assert (laplacian_reconstruct(laplacian_pyramid(x32, levels)) - x32).abs().max() < 1e-5


def test_pyramid_levels_of_a_constant():
    c = torch.full((1, 3, 32, 32), 0.7)
    for level in gaussian_pyramid(c, 4):  # blurring and subsampling a constant keeps it
        assert torch.allclose(level, torch.full_like(level, 0.7), atol=1e-6)
    bands = laplacian_pyramid(c, 4)
    for band in bands[:-1]:  # no band-pass content at all
        assert band.abs().max() < 1e-6
    assert torch.allclose(expand_to(bands[-1], (32, 32)), c, atol=1e-6)


def test_reduce_and_expand_sizes_and_the_binomial_kernel():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 1.0
    r = reduce(x)
    assert r.shape[-2:] == (5, 5)
    k = torch.tensor([1.0, 4, 6, 4, 1]) / 16
    # the impulse at (4,4) lands on kept sample (2,2); its neighbours get the binomial taps at offsets ±2
    assert torch.isclose(r[0, 0, 2, 2], k[2] * k[2])
    assert torch.isclose(r[0, 0, 1, 2], k[0] * k[2])
    assert expand(r, (9, 9)).shape[-2:] == (9, 9)


def test_precondition_known_answers():
    g = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(precondition(g, "none"), g)
    c = torch.full((1, 3, 32, 32), 2.0)
    # gaussian: Σ_k EXPAND^k(G_k) of a constant is K times it
    assert torch.allclose(precondition(c, "gaussian", levels=4), 4 * c, atol=1e-5)
    both = precondition(g, "both", levels=3)
    assert torch.allclose(both, precondition(g, "laplacian", levels=3) + precondition(g, "gaussian", levels=3))
    with pytest.raises(ConfigError, match="Valid: laplacian, gaussian, both, none"):
        precondition(g, "fourier")
    with pytest.raises(ConfigError, match="too many"):
        precondition(g, "laplacian", levels=7)


def _wave(freq_cycles: int, size: int = 64) -> torch.Tensor:
    t = torch.arange(size, dtype=torch.float64)
    row = torch.cos(2 * math.pi * freq_cycles * t / size)
    return row.view(1, 1, 1, -1).expand(1, 3, size, size)


def test_low_frequency_share_known_answers():
    low, high = _wave(4), _wave(16)  # 4/64 = 0.0625 and 16/64 = 0.25 cycles/px; cut-off 0.125
    assert torch.allclose(low_frequency_share(low), torch.tensor([1.0]))
    assert torch.allclose(low_frequency_share(high), torch.tensor([0.0]))
    mixed = 2 * low + high  # power 4 : 1
    assert torch.allclose(low_frequency_share(mixed), torch.tensor([0.8]), atol=1e-6)
    assert low_frequency_share(low + 5.0).item() == pytest.approx(1.0)  # DC does not count
    assert torch.isnan(low_frequency_share(torch.ones(1, 3, 8, 8))).all()


def test_laplacian_normalization_lifts_low_frequencies_of_white_noise():
    g = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    before = low_frequency_share(g)
    # white noise has ~π(1/8)²/1 ≈ 4.9% of its power below a quarter of Nyquist
    assert before.mean().item() == pytest.approx(math.pi * 0.125**2, abs=0.01)
    assert (low_frequency_share(precondition(g, "laplacian", 4)) > 2 * before).all()
    assert (low_frequency_share(precondition(g, "gaussian", 4)) > 2 * before).all()


def test_reduce_and_expand_match_scipy_filtering():
    from scipy import ndimage

    x = torch.randn(2, 3, 21, 26, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    k = np.array([1.0, 4, 6, 4, 1]) / 16
    ref = ndimage.correlate1d(ndimage.correlate1d(x.numpy(), k, axis=-1, mode="mirror"), k, axis=-2, mode="mirror")
    assert np.allclose(reduce(x).numpy(), ref[..., ::2, ::2], atol=1e-12)
    small = reduce(x)
    up = np.zeros((2, 3, 22, 26))
    up[..., ::2, ::2] = small.numpy()
    ref = ndimage.correlate1d(ndimage.correlate1d(up, 2 * k, axis=-1, mode="mirror"), 2 * k, axis=-2, mode="mirror")
    got = expand(small, (21, 26)).numpy()
    assert got.shape[-2:] == (21, 26)
    assert np.allclose(got[..., 2:-2, 2:-2], ref[..., 2:19, 2:24], atol=1e-12)  # away from the borders

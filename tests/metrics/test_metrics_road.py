"""ROAD: linear imputation exact on a ramp, equal to Quantus' noisy_linear_imputation (noise 0),
the MoRF/LeRF curves equal to a per-image, per-percentage re-computation, finite on bad maps."""

import numpy as np
import pytest
import torch
from metric_models import small_cnn

from xaibench.errors import ConfigError
from xaibench.metrics.base import METRICS
from xaibench.metrics.road import linear_imputation, noisy_linear_imputation
from xaibench.models.adapter import ModelAdapter

g = torch.Generator().manual_seed(0)


def test_linear_ramp_is_reconstructed_exactly():
    h, w = 12, 14
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    ramp = torch.stack([0.3 * yy + 0.5 * xx + 0.1, -0.2 * yy + 0.05 * xx, xx - yy]).unsqueeze(0)
    remove = torch.rand(1, h, w, generator=g) < 0.6
    remove[:, 0] = remove[:, -1] = False  # the border's one-sided neighbourhood is not symmetric
    remove[:, :, 0] = remove[:, :, -1] = False
    remove[0, 3:9, 3:10] = True  # a large hole too
    out = linear_imputation(ramp, remove)
    assert torch.allclose(out, ramp, atol=1e-10)
    noisy = noisy_linear_imputation(ramp, remove, 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(noisy[:, :, ~remove[0]], ramp[:, :, ~remove[0]])
    assert (noisy - ramp)[:, :, remove[0]].abs().min() > 0


@pytest.mark.slow
def test_imputation_equals_quantus():
    from quantus.functions.perturb_func import noisy_linear_imputation as quantus_imputation

    x = torch.randn(3, 3, 10, 9, generator=g, dtype=torch.float64)
    remove = torch.rand(3, 10, 9, generator=g) < 0.5
    ours = linear_imputation(x, remove)
    for i in range(3):
        ref = quantus_imputation(x[i].numpy(), np.flatnonzero(remove[i].numpy().ravel()), noise=0.0)
        assert np.allclose(ours[i].numpy(), ref, atol=1e-10)


@torch.no_grad()
def test_road_curves_equal_per_image_recomputation():
    cnn = small_cnn()
    model = ModelAdapter(cnn, input_size=10)
    x = torch.randn(2, 3, 10, 10, generator=g)
    maps = torch.rand(2, 10, 10, generator=g)
    target = torch.tensor([1, 3])
    pcts = [10.0, 50.0, 90.0]
    res = METRICS.build("road_combined", percentages=pcts, noise=0.0, chunk_size=4)(model, x, maps, target)
    for order in ["morf", "lerf"]:
        expected = np.zeros((2, 3))
        for i in range(2):
            by_relevance = np.argsort(-maps[i].numpy().ravel())
            for j, p in enumerate(pcts):
                k = int(100 * p / 100)
                idx = by_relevance[:k] if order == "morf" else by_relevance[100 - k :]
                remove = torch.zeros(1, 100, dtype=torch.bool)
                remove[0, idx] = True  # one image at a time, through the imputer checked against Quantus
                imputed = linear_imputation(x[i : i + 1], remove.view(1, 10, 10))
                probs = cnn(imputed).softmax(1)
                expected[i, j] = probs[0, target[i]].item()
        assert np.allclose(res.extras[order].numpy(), expected.mean(1), atol=1e-5), order
        single = METRICS.build(f"road_{order}", percentages=pcts, noise=0.0)(model, x, maps, target)
        assert np.allclose(single.curves.numpy(), expected, atol=1e-5)
    assert torch.allclose(res.values, (res.extras["lerf"] - res.extras["morf"]) / 2, atol=1e-6)


@pytest.mark.parametrize("name", ["road_morf", "road_lerf", "road_combined"])
def test_road_finite_on_nan_and_constant_maps(name):
    model = ModelAdapter(small_cnn(), input_size=8)
    maps = torch.stack([torch.full((8, 8), float("nan")), torch.ones(8, 8)])
    res = METRICS.build(name, percentages=[30.0, 70.0])(model, torch.randn(2, 3, 8, 8), maps, torch.tensor([0, 1]))
    assert torch.isfinite(res.values).all()


def test_road_bad_percentages():
    with pytest.raises(ConfigError, match="percentages"):
        METRICS.build("road_morf", percentages=[0.0, 100.0])

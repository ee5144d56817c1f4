"""Randomization: similarity building blocks against scipy/skimage, an explainer that ignores the
weights keeps similarity 1, a gradient explainer loses it, the model is restored bit for bit."""

import numpy as np
import pytest
import torch
import torchvision
from metric_models import small_cnn
from scipy.stats import rankdata, spearmanr
from skimage.metrics import structural_similarity

from xaibench.errors import LayerError
from xaibench.metrics.base import METRICS
from xaibench.metrics.sanity import average_ranks, default_stages, pearson, spearman, ssim
from xaibench.models.adapter import ModelAdapter

g = torch.Generator().manual_seed(0)


def test_average_ranks_and_spearman_match_scipy():
    a = torch.randint(0, 5, (3, 40), generator=g).double()  # many ties
    b = torch.randn(3, 40, generator=g).double()
    for i in range(3):
        assert np.allclose(average_ranks(a)[i].numpy(), rankdata(a[i].numpy()) - 1)
        assert spearman(a, b)[i].item() == pytest.approx(spearmanr(a[i], b[i]).statistic, abs=1e-12)
    assert pearson(torch.ones(1, 5), torch.ones(1, 5)).item() == 1.0
    assert pearson(torch.ones(1, 5), torch.arange(5.0)[None]).item() == 0.0


def test_ssim_matches_skimage():
    a = torch.rand(2, 20, 17, generator=g).double()
    b = (a + 0.3 * torch.rand(2, 20, 17, generator=g).double()).clamp(0, 1)
    for i in range(2):
        ref = structural_similarity(a[i].numpy(), b[i].numpy(), data_range=1.0)
        assert ssim(a, b)[i].item() == pytest.approx(ref, abs=1e-10)


def edges(model, x, target):
    """An 'explainer' that ignores the model: Sobel gradient magnitude of the image."""
    k = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    gray = x.mean(1, keepdim=True)
    gx = torch.nn.functional.conv2d(gray, k.view(1, 1, 3, 3), padding=1)
    gy = torch.nn.functional.conv2d(gray, k.t().reshape(1, 1, 3, 3), padding=1)
    return (gx**2 + gy**2).sqrt()[:, 0]


def input_gradient(model, x, target):
    with torch.enable_grad():
        x = x.clone().requires_grad_(True)
        score = model(x).gather(1, target[:, None]).sum()
        (grad,) = torch.autograd.grad(score, x)
    return grad.abs().amax(1)


def small():
    return ModelAdapter(small_cnn(classes=10), input_size=32)


def test_default_stages_are_top_level_blocks_from_the_logits_down():
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=10)
    assert default_stages(net) == ["fc", "layer4", "layer3", "layer2", "layer1", "bn1", "conv1"]
    assert default_stages(small_cnn()) == ["6", "2", "0"]  # Sequential: only the children with parameters


def snapshot(model):
    return {k: v.clone() for k, v in model.module.state_dict().items()}


def assert_identical(model, saved):
    now = model.module.state_dict()
    assert now.keys() == saved.keys()
    assert all(torch.equal(now[k], saved[k]) for k in saved)


def test_explainer_ignoring_weights_keeps_similarity_one_and_model_restored():
    model = small()
    saved = snapshot(model)
    x = torch.randn(2, 3, 32, 32, generator=g)
    t = torch.tensor([1, 2])
    rng = torch.random.get_rng_state()
    res = METRICS.build("randomization")(model, x, edges(model, x, t), t, explain=edges)
    assert res.curves.shape == (2, 3)
    assert torch.allclose(res.curves, torch.ones(2, 3))
    for name in ["spearman", "ssim", "hog_pearson"]:
        assert torch.allclose(res.extras[name], torch.ones(2), atol=1e-6), name
    assert_identical(model, saved)
    assert torch.equal(torch.random.get_rng_state(), rng)


def test_gradient_explainer_loses_similarity_and_model_restored():
    model = small()
    saved = snapshot(model)
    x = torch.randn(4, 3, 32, 32, generator=g)
    t = torch.tensor([1, 2, 3, 4])
    maps = input_gradient(model, x, t)
    res = METRICS.build("randomization", similarity="ssim", stages=["6", "2"])(model, x, maps, t, explain=input_gradient)
    assert res.curves.shape == (4, 2)
    full = METRICS.build("randomization")(model, x, maps, t, explain=input_gradient)
    # a tiny random net's input gradient after re-initialization: measured curves ~0.1-0.4, falling
    assert (full.curves < 0.6).all() and full.curves[:, -1].mean() < full.curves[:, 0].mean()
    assert_identical(model, saved)
    assert torch.equal(input_gradient(model, x, t), maps)


def test_randomization_is_cascading():
    """Stage k sees stages 1…k re-initialized (logits first) and the blocks below untouched
    (Adebayo et al. 2018's cascading randomization, not one stage at a time)."""
    model = small()
    saved = snapshot(model)
    seen = []

    def records_changed_blocks(model, x, target):
        now = model.module.state_dict()
        seen.append(sorted({k.split(".")[0] for k in saved if not torch.equal(now[k], saved[k])}, reverse=True))
        return edges(model, x, target)

    x = torch.randn(1, 3, 32, 32, generator=g)
    METRICS.build("randomization")(model, x, edges(model, x, None), torch.tensor([0]), explain=records_changed_blocks)
    assert seen == [["6"], ["6", "2"], ["6", "2", "0"]]
    assert_identical(model, saved)


def test_model_restored_when_the_explainer_fails():
    model = small()
    saved = snapshot(model)
    calls = []

    def failing(model, x, target):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return edges(model, x, target)

    x = torch.randn(1, 3, 32, 32, generator=g)
    with pytest.raises(RuntimeError, match="boom"):
        METRICS.build("randomization")(model, x, edges(model, x, None), torch.tensor([0]), explain=failing)
    assert_identical(model, saved)


def test_unknown_stage_raises():
    model = small()
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(LayerError, match="layer5"):
        METRICS.build("randomization", stages=["layer5"])(model, x, torch.rand(1, 32, 32), torch.tensor([0]),
                                                            explain=edges)

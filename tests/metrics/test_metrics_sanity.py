"""Randomization: similarity building blocks against scipy/skimage, an explainer that ignores the
weights keeps similarity 1, a gradient explainer loses it, the model is restored bit for bit."""

import math

import numpy as np
import pytest
import torch
import torchvision
from metric_models import small_cnn
from scipy.stats import rankdata, spearmanr
from skimage.metrics import structural_similarity

from xaibench.errors import LayerError
from xaibench.metrics.base import METRICS
from xaibench.metrics.sanity import average_ranks, default_stages, pearson, spearman, ssim, stage_parameters
from xaibench.models.adapter import ModelAdapter
from xaibench.models.edits import randomized

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


def tiny_vit():
    """torchvision's ViT-B/16 architecture at a tiny size: class token, position embedding and
    attention in-projections live outside any `reset_parameters`."""
    torch.manual_seed(0)
    return torchvision.models.vision_transformer.VisionTransformer(
        image_size=32, patch_size=16, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16, num_classes=5).eval()


def trained(net):
    """Every parameter moved away from any initializer's value, as training does."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return net


def test_default_stages_are_layers_from_the_logits_down():
    """Adebayo et al.'s cascade goes layer by layer (not top-level blocks, which give VGG a 2-point
    curve); every parameter of the model is in exactly one stage."""
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=10)
    stages = default_stages(net)
    assert stages[:4] == ["fc", "layer4.1.bn2", "layer4.1.conv2", "layer4.1.bn1"] and stages[-2:] == ["bn1", "conv1"]
    assert len(stages) == 41  # 20 convolutions, 20 BatchNorms, fc
    assert default_stages(small_cnn()) == ["6", "2", "0"]  # Sequential: only the layers with parameters
    vit = tiny_vit()
    stages = default_stages(vit)
    assert stages[0] == "heads.head" and stages[-3:] == ["encoder.pos_embedding", "conv_proj", "class_token"]
    assert "encoder.layers.encoder_layer_1.self_attention" in stages  # in- and out-projection: one layer
    owned = [n for st in stages for n in stage_parameters(vit, st)]
    assert sorted(owned) == sorted(n for n, _ in vit.named_parameters())  # each parameter once


def test_every_parameter_gets_a_fresh_draw_on_a_vit():
    """Issue 16: on torchvision's ViT the class token, the position embedding and the attention
    in-projections were never re-initialized (only modules with `reset_parameters` were). Now each
    parameter changes: the module's own initializer where it has one, else N(0, rms²)."""
    vit = trained(tiny_vit())
    before = {n: p.detach().clone() for n, p in vit.named_parameters()}
    rng = torch.random.get_rng_state()
    with randomized(vit, list(before), seed=3):
        now = dict(vit.named_parameters())
        unchanged = [n for n in before if torch.equal(now[n], before[n])]
        assert unchanged == []
        w = now["encoder.layers.encoder_layer_0.self_attention.in_proj_weight"]
        assert w.abs().max() <= math.sqrt(6 / (8 + 24)) + 1e-6  # MultiheadAttention's xavier_uniform_
        assert (now["encoder.layers.encoder_layer_0.self_attention.in_proj_bias"] == 0).all()  # and its zeros
        assert (now["encoder.ln.weight"] == 1).all()  # LayerNorm's own init
        for name in ("class_token", "encoder.pos_embedding"):  # no initializer: matched-scale normal draw
            ratio = now[name].pow(2).mean().sqrt() / before[name].pow(2).mean().sqrt()
            assert 0.5 < ratio.item() < 2.0, name
    assert all(torch.equal(p, before[n]) for n, p in vit.named_parameters())  # restored bit for bit
    assert torch.equal(torch.random.get_rng_state(), rng)


def test_a_stage_randomizes_only_its_own_parameters():
    """The attention's own initializer also re-draws the out-projection's bias: undone when the stage
    is only the in-projection."""
    vit = trained(tiny_vit())
    before = {n: p.detach().clone() for n, p in vit.named_parameters()}
    attn = "encoder.layers.encoder_layer_0.self_attention"
    with randomized(vit, [f"{attn}.in_proj_weight"], seed=0):
        changed = {n for n, p in vit.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {f"{attn}.in_proj_weight"}


def test_randomization_metric_reaches_every_vit_parameter():
    model = ModelAdapter(trained(tiny_vit()), input_size=32)
    saved = {n: p.detach().clone() for n, p in model.module.named_parameters()}
    last = []

    def records(model, x, target):
        last[:] = [n for n, p in model.module.named_parameters() if torch.equal(p, saved[n])]
        return torch.rand(x.shape[0], 32, 32, generator=torch.Generator().manual_seed(0))

    x = torch.randn(1, 3, 32, 32, generator=g)
    res = METRICS.build("randomization")(model, x, torch.rand(1, 32, 32), torch.tensor([0]), explain=records)
    assert res.curves.shape == (1, len(default_stages(model.module))) and last == []  # nothing left untouched


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


@pytest.mark.parametrize("mode,stages", [
    ("cascading", [["6"], ["6", "2"], ["6", "2", "0"]]),  # stage k on top of stages 1…k−1, logits first
    ("independent", [["6"], ["2"], ["0"]]),  # stage k alone
])
def test_randomization_modes_change_the_documented_blocks(mode, stages):
    """Adebayo et al. 2018: cascading randomization sees stages 1…k re-initialized (logits first) and
    the blocks below untouched; `mode: independent` re-initializes stage k alone. The model is
    restored after either."""
    model = small()
    saved = snapshot(model)
    seen = []

    def records_changed_blocks(model, x, target):
        now = model.module.state_dict()
        seen.append(sorted({k.split(".")[0] for k in saved if not torch.equal(now[k], saved[k])}, reverse=True))
        return edges(model, x, target)

    x = torch.randn(1, 3, 32, 32, generator=g)
    METRICS.build("randomization", mode=mode)(model, x, edges(model, x, None), torch.tensor([0]),
                                              explain=records_changed_blocks)
    assert seen == stages
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

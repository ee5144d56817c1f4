"""Gradient explainers: known answers on a linear model, agreement with Captum, batch independence."""

import pytest
import torch
from captum import attr as cattr
from saliency_models import pearson, resnet18, small_cnn
from torch import nn

from xaibench.errors import ConfigError
from xaibench.models.adapter import ModelAdapter
from xaibench.saliency.base import EXPLAINERS


def linear_model():
    torch.manual_seed(1)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3, bias=False))
    return ModelAdapter.wrap(lin.eval(), input_size=4), lin[1].weight.detach().view(3, 3, 4, 4)


def test_gradient_family_known_answers_on_a_linear_model():
    model, w = linear_model()
    x = torch.randn(2, 3, 4, 4)
    t = torch.tensor([0, 2])
    assert torch.allclose(EXPLAINERS.build("saliency")(model, x, t), w[t].abs().amax(1))
    assert torch.allclose(EXPLAINERS.build("inputxgrad")(model, x, t), (x * w[t]).sum(1), atol=1e-6)
    # no ReLU: guided backprop and deconvnet are the plain gradient
    assert torch.allclose(EXPLAINERS.build("guided_backprop")(model, x, t), w[t].sum(1), atol=1e-6)
    assert torch.allclose(EXPLAINERS.build("deconvnet")(model, x, t), w[t].sum(1), atol=1e-6)
    ig = EXPLAINERS.build("integrated_gradients", steps=3)
    # the path integral of a linear model is exact with any quadrature
    assert torch.allclose(ig(model, x, t), (x * w[t]).sum(1), atol=1e-5)
    assert ig.diagnostics["completeness_error"].shape == (2,)
    assert ig.diagnostics["completeness_error"].max() < 1e-4
    for baseline in ("uniform", "blur", "black"):
        igb = EXPLAINERS.build("integrated_gradients", steps=2, baseline=baseline, blur_kernel=3, blur_sigma=1.0)
        attr = igb.attribute(model, x, t)
        assert igb.diagnostics["completeness_error"].max() < 1e-4
        assert not torch.allclose(attr, x * w[t])  # a different baseline: a different attribution


CAPTUM = {
    "saliency": lambda m: cattr.Saliency(m),
    "inputxgrad": lambda m: cattr.InputXGradient(m),
    "guided_backprop": lambda m: cattr.GuidedBackprop(m),
    "deconvnet": lambda m: cattr.Deconvolution(m),
}


@pytest.mark.parametrize("name", list(CAPTUM))
@pytest.mark.parametrize("which", ["small_cnn", pytest.param("resnet18", marks=pytest.mark.slow)])
def test_gradient_methods_agree_with_captum(name, which):
    # Captum's ReLU hooks see only nn.ReLU modules, so the reference model has no functional relu
    model = small_cnn(functional=False) if which == "small_cnn" else resnet18()
    torch.manual_seed(3)
    x = torch.randn(3, 3, *model.input_size)
    t = torch.tensor([0, 1, 4])
    explainer = EXPLAINERS.build(name)
    ours = explainer.attribute(model, x, t)
    ref = CAPTUM[name](model.module).attribute(x.clone(), target=t)
    assert pearson(ours, ref).min() >= 0.99
    assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-5)


def test_guided_backprop_covers_functional_relu():
    func, mod = small_cnn(functional=True), small_cnn(functional=False)  # same weights
    x = torch.randn(2, 3, 16, 16)
    t = torch.tensor([1, 2])
    for name in ["guided_backprop", "deconvnet"]:
        a = EXPLAINERS.build(name).attribute(func, x, t)
        b = EXPLAINERS.build(name).attribute(mod, x, t)
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("method", ["riemann_trapezoid", "gausslegendre", pytest.param("riemann_left", marks=pytest.mark.slow)])
def test_integrated_gradients_agrees_with_captum(method):
    model = small_cnn()
    torch.manual_seed(4)
    x = torch.randn(2, 3, 16, 16)
    t = torch.tensor([2, 4])
    ig = EXPLAINERS.build("integrated_gradients", steps=8, method=method, baseline="blur", blur_kernel=5,
                          blur_sigma=3.0, chunk_size=5)
    ours = ig.attribute(model, x, t)
    from xaibench.imageops import gaussian_blur
    ref, delta = cattr.IntegratedGradients(model.module).attribute(
        x, baselines=gaussian_blur(x, 5, 3.0), target=t, n_steps=8, method=method, return_convergence_delta=True)
    assert pearson(ours, ref).min() >= 0.99
    if method == "riemann_trapezoid":
        # Captum's trapezoid weights are 1/(2n), 1/n, …, 1/(2n): they sum to (n−1)/n, not 1
        ref = ref * 8 / 7
    assert torch.allclose(ours, ref, rtol=1e-3, atol=1e-5)
    if method != "riemann_trapezoid":
        assert torch.allclose(ig.diagnostics["completeness_error"], delta.abs(), rtol=1e-3, atol=1e-4)


def test_integrated_gradients_batch_independent_and_chunk_invariant():
    model = small_cnn()
    x = torch.randn(3, 3, 16, 16)
    t = torch.tensor([0, 3, 1])
    full = EXPLAINERS.build("integrated_gradients", steps=4, baseline="black", chunk_size=5)(model, x, t)
    big = EXPLAINERS.build("integrated_gradients", steps=4, baseline="black", chunk_size=100)(model, x, t)
    assert torch.allclose(full, big, atol=1e-5)
    split = EXPLAINERS.build("integrated_gradients", steps=4, baseline="black", chunk_size=2)(model, x, t)
    assert torch.allclose(full, split, atol=1e-5)  # a step's 3 images split over model calls
    alone = EXPLAINERS.build("integrated_gradients", steps=4, baseline="black", chunk_size=5)(model, x[1:2], t[1:2])
    assert torch.allclose(alone[0], full[1], atol=1e-5)


def test_integrated_gradients_counts_passes():
    model = small_cnn()
    x = torch.randn(2, 3, 16, 16)
    before = model.counter.snapshot()
    EXPLAINERS.build("integrated_gradients", steps=5, chunk_size=3)(model, x, torch.tensor([0, 1]))
    used = model.counter.since(before)
    assert used["backward_images"] == 5 * 2
    assert used["forward_images"] == 5 * 2 + 2 * 2  # steps, plus x and its baseline for completeness
    assert used["forward_calls"] == 5 + 1  # chunk 3 holds one whole step of the 2 images


@pytest.mark.parametrize("nt_type,method", [("smoothgrad", "saliency"), ("vargrad", "inputxgrad"),
                                            pytest.param("vargrad", "saliency", marks=pytest.mark.slow)])
def test_noise_tunnel_agrees_with_captum_on_the_same_noise(nt_type, method, monkeypatch):
    model = small_cnn(functional=False)
    n, b = 4, 2
    torch.manual_seed(5)
    x = torch.randn(b, 3, 16, 16).clamp(-2, 2)
    x[:, 0, 0, 0], x[:, 0, 0, 1] = -2.0, 2.0  # every image has range 4 → one Captum stdev
    t = torch.tensor([1, 3])
    z = torch.randn(n, b, 3, 16, 16)
    ours_ex = EXPLAINERS.build(nt_type, method=method, n_samples=n, noise_level=0.1, chunk_size=3)
    ours_ex.standard_noise = z
    ours = ours_ex.attribute(model, x, t)
    captum_z = z.transpose(0, 1).reshape(b * n, 3, 16, 16)  # Captum: image-major, repeat_interleave
    monkeypatch.setattr(torch, "normal", lambda mean, std: std * captum_z)
    inner = cattr.Saliency(model.module) if method == "saliency" else cattr.InputXGradient(model.module)
    ref = cattr.NoiseTunnel(inner).attribute(x, nt_type=nt_type, nt_samples=n, stdevs=0.4, target=t)
    monkeypatch.undo()
    assert pearson(ours, ref).min() >= 0.99
    assert torch.allclose(ours, ref, rtol=1e-3, atol=1e-6)


def test_smoothgrad_seeded_and_wraps_any_gradient_method():
    model = small_cnn()
    x = torch.randn(2, 3, 16, 16)
    t = torch.tensor([0, 1])
    a = EXPLAINERS.build("smoothgrad", n_samples=3, seed=7)(model, x, t)
    b = EXPLAINERS.build("smoothgrad", n_samples=3, seed=7)(model, x, t)
    c = EXPLAINERS.build("smoothgrad", n_samples=3, seed=8)(model, x, t)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # zero noise: SmoothGrad of any method is that method
    for method, params in [("guided_backprop", {}), ("integrated_gradients", {"steps": 3})]:
        sg = EXPLAINERS.build("smoothgrad", method=method, method_params=params, n_samples=2, noise_level=0.0)
        plain = EXPLAINERS.build(method, **params)
        assert torch.allclose(sg(model, x, t), plain(model, x, t), atol=1e-5)
    vg = EXPLAINERS.build("vargrad", n_samples=3, noise_level=0.0)
    assert torch.allclose(vg(model, x, t), torch.zeros(2, 16, 16), atol=1e-6)
    with pytest.raises(ConfigError, match="not a per-pixel gradient method.*Valid: .*saliency"):
        EXPLAINERS.build("smoothgrad", method="gradcam")(model, x, t)


@pytest.mark.parametrize("name", ["smoothgrad", "vargrad"])
def test_noise_tunnel_maps_do_not_depend_on_the_batch(name):
    """Every image of a batch gets the same standard-normal draws (scaled by its own σ), so an
    image's map is the same alone, in any batch position, and over any chunking."""
    model = small_cnn()
    x = torch.randn(3, 3, 15, 15)  # 675 values per sample: not a multiple of the generator's block
    t = torch.tensor([0, 1, 2])
    batch = EXPLAINERS.build(name, n_samples=5, chunk_size=7)(model, x, t)
    for i in range(3):
        alone = EXPLAINERS.build(name, n_samples=5, chunk_size=2)(model, x[i:i + 1], t[i:i + 1])
        assert torch.allclose(alone[0], batch[i], rtol=1e-5, atol=1e-7)
    flipped = EXPLAINERS.build(name, n_samples=5, chunk_size=1)(model, x.flip(0), t.flip(0))
    assert torch.allclose(flipped.flip(0), batch, rtol=1e-5, atol=1e-7)


def test_guided_gradcam_agrees_with_captum():
    model = small_cnn(functional=False)
    torch.manual_seed(6)
    x = torch.randn(2, 3, 16, 16)
    t = torch.tensor([0, 4])
    ours = EXPLAINERS.build("guided_gradcam", layer="conv3", upsample_mode="nearest").attribute(model, x, t)
    ref = cattr.GuidedGradCam(model.module, model.module.conv3).attribute(x, target=t)
    assert pearson(ours, ref).min() >= 0.99
    assert torch.allclose(ours, ref, rtol=1e-3, atol=1e-6)
    bil = EXPLAINERS.build("guided_gradcam", layer="conv3")(model, x, t)
    assert bil.shape == (2, 16, 16) and not torch.allclose(bil, ours.sum(1))

"""MSG-CAM (docs/methods.md §MSG-CAM) on hand-built models with known answers, against a literal
per-channel, per-image implementation of Algorithm 1 (also on a strided model with coarse feature
maps), with the class choice, the raw/normalized group masks, the fallback and batch independence."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xaibench.errors import ConfigError
from xaibench.imageops import gaussian_blur
from xaibench.memory import build_sized
from xaibench.models.adapter import ModelAdapter
from xaibench.saliency import EXPLAINERS
from xaibench.saliency.msgcam import scale_sizes


class RegionMass(nn.Module):
    """features = ReLU(1×1 conv) picking colour channels; logit 0 = activation mass inside the
    top-left quadrant of the feature map (at any input size); logit 1 = a constant below it."""

    def __init__(self, k=5):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, k, 1), nn.ReLU())
        with torch.no_grad():
            w = torch.zeros(k, 3, 1, 1)
            for i in range(k):
                w[i, i % 3] = 1.0 + 0.1 * i
            self.features[0].weight.copy_(w)
            self.features[0].bias.fill_(-0.05)

    def forward(self, x):
        a = self.features(x)
        h, w = a.shape[-2:]
        inside = a[:, :, : h // 2, : w // 2].sum((1, 2, 3)) / (h * w)
        return torch.stack([inside, torch.full_like(inside, -1.0)], 1)


def two_patches(n=1, size=32):
    """A red patch inside the scored quadrant, a green one outside it, on black."""
    x = torch.zeros(n, 3, size, size)
    x[:, 0, 4:12, 4:12] = 1.0
    x[:, 1, 20:28, 20:28] = 1.0
    return x


def model(k=5):
    torch.manual_seed(0)
    return ModelAdapter.wrap(RegionMass(k), mean=(0.0,) * 3, std=(1.0,) * 3, input_size=32, name="region")


class Strided(nn.Module):
    """Random conv(stride 2) → ReLU → conv(stride 2) → ReLU ("features", 1/4 resolution: coarse maps
    whose bilinear upsampling is not the identity) → global average pooling → linear."""

    def __init__(self, k=6, classes=3):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, k, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(k, classes)
        torch.manual_seed(5)
        for p in self.parameters():
            nn.init.normal_(p, std=0.5)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


def captured_features(m, xt, c):
    """(logits, A, ∂y_c/∂A) of the one-image batch `xt` at the model's "features" layer."""
    with torch.enable_grad(), m.capture("features") as cap:
        logits = m(xt)
        (g_t,) = torch.autograd.grad(logits[0, c], cap.activation)
    return logits, cap.activation, g_t


def spec_msgcam(m, x0, c, scales, max_size, g, kernel, sigma, group_masks="raw", features=captured_features):
    """Algorithm 1 of the thesis (docs/methods.md §MSG-CAM) read literally for one image: c = top-1
    of F(x0) when `c` is None (line 1), full-resolution ΣA, ΣG, per-channel masks, and the raw
    group mask M_r summed into the map (line 25) unless `group_masks="normalized"`. `features(m, xt,
    c)` gives the target layer's (logits, A, ∂y_c/∂A) as (1, K, h, w) maps at the scaled input `xt`."""
    h0, w0 = x0.shape[-2:]
    xb = gaussian_blur(x0[None], kernel, sigma)
    if c is None:
        with torch.no_grad():
            c = int(m(x0[None]).argmax(1))
    sum_a = sum_g = 0
    t_max = 0
    records = []
    for zeta in scale_sizes((h0, w0), scales, max_size):
        xt = F.interpolate(x0[None], size=zeta, mode="bilinear", align_corners=False)
        logits, a_t, g_t = features(m, xt, c)
        up = [F.interpolate(t, size=(h0, w0), mode="bilinear", align_corners=False) for t in (a_t, g_t)]
        records.append(up)
        if logits.argmax(1).item() == c:
            sum_a, sum_g, t_max = sum_a + up[0], sum_g + up[1], t_max + 1
    if t_max == 0:
        sum_a, sum_g, t_max = records[0][0], records[0][1], 1
    a_bar, g_bar = sum_a[0] / t_max, sum_g[0] / t_max
    m_k = g_bar.mean((1, 2))[:, None, None] * a_bar
    out = torch.zeros(h0, w0)
    with torch.no_grad():
        base = m(xb)[0, c]
        for r in range(math.ceil(m_k.shape[0] / g)):
            mr = torch.relu(m_k[r * g:(r + 1) * g].sum(0))
            span = mr.max() - mr.min()
            mr_norm = (mr - mr.min()) / span if span > 0 else torch.zeros_like(mr)
            xr = x0 * mr_norm + xb[0] * (1 - mr_norm)
            out += (m(xr[None])[0, c] - base) * (mr if group_masks == "raw" else mr_norm)
    return torch.relu(out)


PARAMS = dict(scales=3, max_size=48, group_size=2, blur_kernel=11, blur_sigma=5.0)


def test_map_peaks_in_the_scored_region():
    m, x = model(), two_patches()
    explainer = EXPLAINERS.build("msgcam", **dict(PARAMS, group_size=1))  # one colour per group
    maps = explainer(m, x, torch.tensor([0]))
    peak = divmod(int(maps[0].argmax()), 32)
    assert 4 <= peak[0] < 12 and 4 <= peak[1] < 12
    assert maps[0, 20:28, 20:28].max() == 0  # the green group's input equals x_b inside the quadrant: α = 0
    assert explainer.diagnostics["fallback"].tolist() == [0.0]
    assert explainer.diagnostics["valid_scales"].tolist() == [3.0]


@pytest.mark.parametrize("k,g", [(5, 2), (7, 3), (4, 16)])
def test_equals_the_literal_spec_with_k_not_divisible_by_g(k, g):
    m = model(k)
    x = two_patches(2) + 0.3 * torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    params = dict(PARAMS, group_size=g)
    ours = EXPLAINERS.build("msgcam", **params)(m, x, torch.tensor([0, 0]))
    for i in range(2):
        ref = spec_msgcam(m, x[i], 0, params["scales"], params["max_size"], g, params["blur_kernel"],
                          params["blur_sigma"])
        torch.testing.assert_close(ours[i], ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))


@pytest.mark.parametrize("group_masks", ["raw", "normalized"])
def test_equals_the_literal_algorithm_on_a_strided_model_with_coarse_maps(group_masks):
    net = Strided()
    m = ModelAdapter.wrap(net, mean=(0.0,) * 3, std=(1.0,) * 3, input_size=32, name="strided")
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    params = dict(scales=3, max_size=48, group_size=4, blur_kernel=11, blur_sigma=5.0)  # 32, 48, 64 px: 8, 12, 16 maps
    with torch.no_grad():
        top1 = m(x).argmax(1)
    run_target = (top1 + 1) % 3  # the run's target is never the top-1: ignored by default (line 1)
    explainer = EXPLAINERS.build("msgcam", **params, group_masks=group_masks)
    ours = explainer(m, x, run_target)
    assert explainer.diagnostics["class"].tolist() == top1.float().tolist()
    assert explainer.diagnostics["fallback"].tolist() == [0.0] * 3  # scale 1 is always valid for the top-1
    for i in range(3):
        ref = spec_msgcam(m, x[i], None, params["scales"], params["max_size"], params["group_size"],
                          params["blur_kernel"], params["blur_sigma"], group_masks)
        assert ref.max() > 0
        torch.testing.assert_close(ours[i], ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))


def token_features(net, layer, patch, prefix):
    """A ViT layer's tokens read as its users do: a plain forward hook, the `prefix` tokens dropped,
    the rest reshaped to the (H/patch, W/patch) grid of the scaled input."""

    def features(m, xt, c):
        box = {}
        handle = dict(net.named_modules())[layer].register_forward_hook(lambda mod, inp, out: box.setdefault("t", out))
        try:
            with torch.enable_grad():
                logits = m(xt.detach().requires_grad_(True))
                (g_t,) = torch.autograd.grad(logits[0, c], box["t"])
        finally:
            handle.remove()
        rows, cols = xt.shape[-2] // patch, xt.shape[-1] // patch
        return logits, *(t[:, prefix:].reshape(1, rows, cols, -1).permute(0, 3, 1, 2) for t in (box["t"], g_t))

    return features


def test_equals_the_literal_algorithm_on_a_vit_token_layer_at_every_scale():
    # a dynamic-size timm ViT (class + 1 register token, 8-px patches): at 32, 48 and 64 px the token
    # grid is 4×4, 6×6 and 8×8 — MSG-CAM reads each scale's grid from the patch embedding
    from timm.models.vision_transformer import VisionTransformer
    from vit_models import sharpened

    from xaibench.saliency.base import unmet_needs

    net = sharpened(VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=3,
                                      reg_tokens=1, dynamic_img_size=True))
    m = ModelAdapter.wrap(net, mean=(0.0,) * 3, std=(1.0,) * 3, input_size=32, name="dyn-vit")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    params = dict(scales=3, max_size=48, group_size=8, blur_kernel=11, blur_sigma=5.0)
    explainer = EXPLAINERS.build("msgcam", layer="blocks.1.norm1", **params)
    assert unmet_needs(explainer, m) is None
    ours = explainer(m, x, torch.zeros(2, dtype=torch.long))
    for i in range(2):
        ref = spec_msgcam(m, x[i], None, params["scales"], params["max_size"], params["group_size"],
                          params["blur_kernel"], params["blur_sigma"],
                          features=token_features(net, "blocks.1.norm1", patch=8, prefix=2))
        assert ref.max() > 0
        torch.testing.assert_close(ours[i], ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))


def test_raw_and_normalized_group_masks_give_different_maps():
    m = ModelAdapter.wrap(Strided(k=12), mean=(0.0,) * 3, std=(1.0,) * 3, input_size=32, name="strided")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    t = torch.zeros(2, dtype=torch.long)
    raw = EXPLAINERS.build("msgcam", **dict(PARAMS, group_size=3))(m, x, t)
    norm = EXPLAINERS.build("msgcam", **dict(PARAMS, group_size=3), group_masks="normalized")(m, x, t)
    assert not torch.allclose(raw, norm, rtol=1e-2, atol=1e-3 * float(raw.abs().max()))


def test_target_class_run_uses_the_run_target_and_top1_ignores_it():
    m, x = model(), two_patches(1)
    top1 = EXPLAINERS.build("msgcam", **PARAMS)
    assert torch.equal(top1(m, x, torch.tensor([1])), top1(m, x, torch.tensor([0])))  # c = top-1 = 0 either way
    assert top1.diagnostics["class"].tolist() == [0.0]
    run = EXPLAINERS.build("msgcam", **PARAMS, target_class="run")
    maps = run(m, x, torch.tensor([1]))
    assert run.diagnostics["class"].tolist() == [1.0] and run.diagnostics["fallback"].tolist() == [1.0]
    assert not torch.equal(maps, top1(m, x, torch.tensor([1])))


def test_class_top1_at_no_scale_takes_the_single_scale_fallback():
    m, x = model(), two_patches(2)
    target = torch.tensor([1, 0])  # class 1 is never top-1
    explainer = EXPLAINERS.build("msgcam", **PARAMS, target_class="run")
    maps = explainer(m, x, target)
    assert explainer.diagnostics["fallback"].tolist() == [1.0, 0.0]
    assert explainer.diagnostics["valid_scales"].tolist() == [1.0, 3.0]
    one_scale = EXPLAINERS.build("msgcam", **dict(PARAMS, scales=1), target_class="run")(m, x[:1], target[:1])
    torch.testing.assert_close(maps[:1], one_scale)
    ref = spec_msgcam(m, x[0], 1, 3, 48, 2, 11, 5.0)
    torch.testing.assert_close(maps[0], ref, rtol=1e-4, atol=1e-6)


def test_batch_gives_the_maps_of_its_images_one_by_one():
    m = model()
    x = two_patches(3) + 0.2 * torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 1, 0])
    explainer = EXPLAINERS.build("msgcam", **PARAMS, chunk_size=3, scale_batch=2, target_class="run")
    both = explainer(m, x, target)
    for i in range(3):
        torch.testing.assert_close(both[i:i + 1], explainer(m, x[i:i + 1], target[i:i + 1]), rtol=1e-5, atol=1e-7)


def test_pass_count_matches_the_spec_formula():
    m, x = model(k=6), two_patches(2) + 0.1
    before = m.counter.snapshot()
    explainer = EXPLAINERS.build("msgcam", **PARAMS)
    explainer(m, x, torch.tensor([0, 0]))
    used = m.counter.since(before)
    assert used["backward_images"] == 2 * 3  # N forward+backward per image
    assert used["forward_images"] <= 2 * (3 + math.ceil(6 / 2) + 1)  # + ceil(K/g) + 1 forwards (fewer if skipped)


def test_defaults_are_the_spec_and_bad_values_are_config_errors():
    p = EXPLAINERS.get("msgcam").params
    assert {k: p[k][1] for k in ("scales", "max_size", "group_size", "blur_kernel", "blur_sigma", "score",
                                 "denoise_sigma", "layer", "group_masks", "target_class")} == dict(
        scales=5, max_size=500, group_size=16, blur_kernel=51, blur_sigma=50.0, score="logit", denoise_sigma=0.0,
        layer="auto", group_masks="raw", target_class="top1")
    assert scale_sizes((224, 224), 5, 500) == [(224, 224), (324, 324), (424, 424), (524, 524), (624, 624)]
    with pytest.raises(ConfigError, match="group_size: must be >= 1, got 0"):  # at build time, before any model call
        EXPLAINERS.build("msgcam", group_size=0)
    with pytest.raises(ConfigError, match="score"):
        EXPLAINERS.build("msgcam", score="prob")


def test_scale_batch_auto_sizes_gradient_passes_from_the_memory_budget():
    m = model()
    x = two_patches(3) + 0.2 * torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 1, 0])
    fixed = EXPLAINERS.build("msgcam", **PARAMS, scale_batch=3)(m, x, target)
    calls = {}
    for budget_gb in (1e-9, 1.0):  # room for less than one image at every scale / for all three
        before = m.counter.snapshot()
        explainer = build_sized(EXPLAINERS, "msgcam", {**PARAMS, "scale_batch": "auto"}, m, (3, 32, 32), True, budget_gb)
        auto = explainer(m, x, target)
        calls[budget_gb] = m.counter.since(before)["backward_calls"]
        torch.testing.assert_close(auto, fixed, rtol=1e-5, atol=1e-7)
    assert calls == {1e-9: 3 * PARAMS["scales"], 1.0: PARAMS["scales"]}
    with pytest.raises(ConfigError, match="scale_batch: must be >= 1, got 0"):
        EXPLAINERS.build("msgcam", **PARAMS, scale_batch=0)

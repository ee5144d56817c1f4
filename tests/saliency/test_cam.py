"""Gradient-weighted CAMs against pytorch-grad-cam and against formulas written out in the test, on
layers of at least 7×7 whose gradient varies over positions, so that every method differs from its
siblings by a clear margin there; CAM against its head weights; the auto layer and user errors."""

import pytest
import torch
from cam_models import (
    ARCHS,
    SIZE,
    calibrated,
    grad_module,
    head_net,
    images,
    model,
    module_named,
    pearson,
    small_densenet,
    top1,
)
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from xaibench.errors import LayerError
from xaibench.saliency import EXPLAINERS
from xaibench.tensorops import upsample

ORACLES = {"gradcam": GradCAM, "gradcampp": GradCAMPlusPlus, "xgradcam": XGradCAM, "layercam": LayerCAM,
           "hirescam": HiResCAM}
SIBLINGS = {"gradcam": ("xgradcam", "hirescam"), "xgradcam": ("gradcam", "hirescam"),
            "hirescam": ("gradcam", "xgradcam"), "gradcampp": ("layercam",), "layercam": ("gradcampp",)}


def reference(name, m, layer, x, target):
    mod = grad_module(m)
    with ORACLES[name](mod, [module_named(mod, layer)]) as ref:
        return torch.from_numpy(ref(x, [ClassifierOutputTarget(int(t)) for t in target]))


@pytest.mark.parametrize("arch", list(ARCHS))
def test_auto_layer_is_last_conv_block(arch):
    assert model(arch).resolve_layer("auto") == ARCHS[arch]


# (model, input size, layer): every layer is ≥ 7×7 and its gradient varies over positions — a spatial
# linear head, a max-pool head, DenseNet's ReLU-then-pool head, VGG's max-pool + MLP head
ORACLE_CASES = {
    "spatial_linear_head": (lambda: head_net("spatial_linear"), 32, "features"),
    "max_pool_head": (lambda: head_net("max_pool"), 32, "features"),
    "densenet": (small_densenet, 224, "features.denseblock4"),  # before norm5's in-place ReLU (see below)
    "vgg11": (lambda: model("vgg11"), 112, "features.19"),
}


@pytest.mark.parametrize("case", list(ORACLE_CASES))
def test_agrees_with_pytorch_grad_cam_and_not_with_the_siblings(case):
    factory, size, layer = ORACLE_CASES[case]
    m, x = factory(), images(2, size=size)
    target = top1(m, x)
    # DenseNet applies relu(features, inplace=True) after `features`: pytorch-grad-cam's stored
    # activation would silently be the post-ReLU one, its gradient the pre-ReLU one; hence denseblock4
    refs = {name: reference(name, m, layer, x, target) for name in ORACLES}
    for name in ORACLES:
        ours = EXPLAINERS.build(name, layer=layer)(m, x, target)
        assert ours.shape == (2, size, size) and ours.dtype == torch.float32
        own = pearson(ours, refs[name]).min().item()
        assert own >= 0.99, (case, name, own)
        for sibling in SIBLINGS[name]:  # the case tells the method from its siblings
            assert pearson(ours, refs[sibling]).max().item() <= 0.98, (case, name, sibling)


@pytest.mark.parametrize("name,arch", zip(ORACLES, ["efficientnet_b0", "mobilenet_v3_small"] * 3))
def test_efficientnet_mobilenet_agree_with_pytorch_grad_cam_and_are_batch_independent(name, arch):
    # 224 px: the auto layer is 7×7. BatchNorm statistics re-estimated: with torchvision's random weights
    # EfficientNet-B0's last activations are ~1e-13 and MobileNet's gradients ~1e-4, where
    # pytorch-grad-cam's ε (1e-7 in XGrad-CAM's Σ A, 1e-6 in Grad-CAM++'s α) outweighs the formula
    m, x = calibrated(arch, 224), images(2, size=224)
    target = torch.tensor([3, 7])
    maps = EXPLAINERS.build(name)(m, x, target)
    assert maps.shape == (2, 224, 224)
    own = pearson(maps, reference(name, m, "features", x, target))
    assert (own >= 0.99).all(), own
    one = EXPLAINERS.build(name)(m, x[1:2], target[1:2])
    torch.testing.assert_close(maps[1:2], one, rtol=1e-4, atol=1e-5 * float(maps.abs().max()))


def by_hand(name, acts, grads):
    """The five weight formulas written out (papers' equations; docs/methods.md), on (B,K,h,w)."""
    if name == "gradcam":
        w = grads.mean((2, 3), keepdim=True)
    elif name == "xgradcam":
        w = (acts * grads).sum((2, 3), keepdim=True) / acts.sum((2, 3), keepdim=True)
    elif name == "hirescam":
        w = grads
    elif name == "layercam":
        w = grads.clamp_min(0)
    else:  # gradcampp: α = g² / (2g² + Σ_ab A_ab g³), w = Σ α ReLU(g)
        alpha = grads**2 / (2 * grads**2 + acts.sum((2, 3), keepdim=True) * grads**3)
        w = (torch.nan_to_num(alpha) * grads.clamp_min(0)).sum((2, 3), keepdim=True)
    return (w * acts).sum(1).clamp_min(0)


@torch.no_grad()
def test_every_gradient_cam_by_hand_on_a_spatial_linear_head():
    """logits = W · flatten(A) + b: ∂y_c/∂A_kij = W_c,kij exactly, a different value at every position."""
    m, x = head_net("spatial_linear"), images(3, size=32)
    target = torch.tensor([1, 5, 8])
    acts = m.module.features(x)
    grads = m.module.head[1].weight[target].view(3, 16, 8, 8)
    expected = {name: upsample(by_hand(name, acts, grads), (32, 32)) for name in ORACLES}
    for name in ORACLES:
        ours = EXPLAINERS.build(name)(m, x, target)
        torch.testing.assert_close(ours, expected[name], rtol=1e-4, atol=1e-5 * float(expected[name].abs().max()))
        for sibling in SIBLINGS[name]:
            assert (expected[name] - expected[sibling]).abs().max() > 0.1 * expected[name].abs().max(), (name, sibling)


@torch.no_grad()
def test_gradcam_xgradcam_hirescam_and_cam_by_hand_on_a_relu_gap_head():
    """DenseNet's head, ReLU → GAP → linear, on signed features: ∂y_c/∂A_kij = w_ck·[A_kij > 0]/hw, so
    HiRes-CAM = ReLU(CAM)/hw (CAM reads ReLU(A)); Grad-CAM weighs A_k by w_ck·(share of A_k > 0)/hw;
    XGrad-CAM by w_ck·Σ ReLU(A_k) / (hw·Σ A_k). On a plain GAP head all three would coincide."""
    m, x = head_net("relu_gap_linear", relu=False), images(3, size=32)
    target = torch.tensor([0, 4, 7])
    acts = m.module.features(x)
    assert (acts < 0).any() and (acts > 0).any()
    w = m.module.head.fc.weight[target][:, :, None, None]
    cam = (w * acts.clamp_min(0)).sum(1)
    expected = {
        "hirescam": cam.clamp_min(0) / 64,
        "gradcam": (w * (acts > 0).float().mean((2, 3), keepdim=True) * acts).sum(1).clamp_min(0) / 64,
        "xgradcam": (w * acts.clamp_min(0).sum((2, 3), keepdim=True) / acts.sum((2, 3), keepdim=True)
                     * acts).sum(1).clamp_min(0) / 64,
    }
    for name, want in expected.items():
        want = upsample(want, (32, 32))
        torch.testing.assert_close(EXPLAINERS.build(name)(m, x, target), want, rtol=1e-4, atol=1e-6 * float(want.abs().max()))
        for sibling in SIBLINGS[name]:
            assert (expected[name] - expected[sibling]).abs().max() > 0.1 * expected[name].abs().max(), (name, sibling)
    torch.testing.assert_close(EXPLAINERS.build("cam")(m, x, target), upsample(cam, (32, 32)))


def test_cam_equals_head_weights_times_activations():
    m, x = model("resnet18"), images()
    target = torch.tensor([2, 5, 9])
    with torch.no_grad(), m.capture("layer4") as cap:
        logits = m(x)
    acts = cap.activation
    w = m.module.fc.weight[target]
    by_hand_cam = torch.einsum("bk,bkhw->bhw", w, acts)
    # the class score is the map's spatial mean plus the bias (Zhou et al. 2016, eq. for S_c)
    torch.testing.assert_close(by_hand_cam.mean((1, 2)) + m.module.fc.bias[target], logits.gather(1, target[:, None])[:, 0])
    maps = EXPLAINERS.build("cam")(m, x, target)
    torch.testing.assert_close(maps, upsample(by_hand_cam, (SIZE, SIZE)))
    assert (maps < 0).any()  # CAM keeps the sign


@torch.no_grad()
def test_cam_is_gradcam_before_relu_on_an_8x8_gap_linear_head():
    m, x = head_net("gap_linear", relu=False), images(3, size=32)
    target = top1(m, x)
    acts = m.module.features(x)
    cam = (m.module.head[2].weight[target][:, :, None, None] * acts).sum(1)  # 8×8, both signs
    assert (cam < 0).any() and (cam > 0).any()
    torch.testing.assert_close(EXPLAINERS.build("cam")(m, x, target), upsample(cam, (32, 32)))
    # ∂y_c/∂A_kij = w_ck / 64 at every position: Grad-CAM = ReLU(CAM) / 64 before upsampling (and so
    # are XGrad-CAM and HiRes-CAM here: the ReLU-GAP head above is what tells them apart)
    torch.testing.assert_close(EXPLAINERS.build("gradcam")(m, x, target), upsample(torch.relu(cam) / 64, (32, 32)),
                               rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("arch", ["densenet121", "mobilenet_v2"])
def test_cam_on_other_gap_linear_heads(arch):
    m, x = model(arch), images(2)
    target = top1(m, x)
    cam = EXPLAINERS.build("cam")(m, x, target)
    hires = EXPLAINERS.build("hirescam")(m, x, target)
    # on a (ReLU +) GAP + linear head, ∂y_c/∂A_kij = w_ck·[A_kij > 0] / (h·w): HiResCAM = ReLU(CAM) / 4 at 2×2
    # (Draelos & Carin 2020, §3); relative tolerance: random-weight maps can be tiny
    torch.testing.assert_close(torch.relu(cam) / 4, hires, rtol=1e-3, atol=1e-4 * float(hires.abs().max()))


@pytest.mark.parametrize("arch,why", [
    ("vgg11", "the last linear layer takes (4096,) features, layer 'features' has 512 channels"),
    ("convnext_tiny", "the last linear layer's input is not the global average of layer 'features'"),
    ("mobilenet_v3_small", "the last linear layer takes (1024,) features, layer 'features' has 576 channels"),
])
def test_cam_refuses_other_heads(arch, why):
    with pytest.raises(LayerError, match="global-average-pool \\+ linear") as e:
        EXPLAINERS.build("cam")(model(arch), images(1), torch.tensor([0]))
    assert why in str(e.value)


def test_unknown_layer_is_a_layer_error():
    with pytest.raises(LayerError, match="layer4"):
        EXPLAINERS.build("gradcam", layer="layer5")(model("resnet18"), images(1), torch.tensor([0]))


def test_typed_parameters_are_listed():
    for name in ["cam", *ORACLES]:
        assert EXPLAINERS.get(name).params["layer"] == (str, "auto")

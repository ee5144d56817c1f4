"""Gradient-weighted CAMs against pytorch-grad-cam as the oracle, on torchvision architectures
with random weights; CAM against its head weights; the auto layer and user errors."""

import pytest
import torch
from cam_models import ARCHS, SIZE, grad_module, images, model, module_named, pearson, top1
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from xaibench.errors import LayerError
from xaibench.saliency import EXPLAINERS
from xaibench.tensorops import upsample

ORACLES = {"gradcam": GradCAM, "gradcampp": GradCAMPlusPlus, "xgradcam": XGradCAM, "layercam": LayerCAM,
           "hirescam": HiResCAM}


def reference(name, m, layer, x, target):
    mod = grad_module(m)
    with ORACLES[name](mod, [module_named(mod, layer)]) as ref:
        return torch.from_numpy(ref(x, [ClassifierOutputTarget(int(t)) for t in target]))


@pytest.mark.parametrize("arch", list(ARCHS))
def test_auto_layer_is_last_conv_block(arch):
    assert model(arch).resolve_layer("auto") == ARCHS[arch]


AGREEMENT = [("resnet18", n) for n in ORACLES] + [
    ("vgg11", "gradcampp"), ("densenet121", "layercam"), ("convnext_tiny", "xgradcam"), ("convnext_tiny", "hirescam")]


@pytest.mark.parametrize("arch,name", AGREEMENT)
def test_agrees_with_pytorch_grad_cam(arch, name):
    m, x = model(arch), images()
    target = top1(m, x)
    # DenseNet applies relu(features, inplace=True) after `features`: pytorch-grad-cam's stored
    # activation (a CPU tensor sharing storage) is then silently the post-ReLU one, while its
    # gradient is the pre-ReLU one; we record the layer's real output. Compare on the block
    # before norm5, which nothing modifies in place.
    layer = "features.denseblock4" if arch == "densenet121" else ARCHS[arch]
    ours = EXPLAINERS.build(name, layer=layer)(m, x, target)
    ref = reference(name, m, layer, x, target)
    assert ours.shape == (3, SIZE, SIZE) and ours.dtype == torch.float32
    assert (ours >= 0).all()
    assert (pearson(ours, ref) >= 0.99).all(), pearson(ours, ref)


@pytest.mark.parametrize("name,arch", zip(ORACLES, ["efficientnet_b0", "mobilenet_v3_small"] * 3))
def test_efficientnet_mobilenet_shapes_and_batch_independence(name, arch):
    m, x = model(arch), images(3)
    target = torch.tensor([0, 3, 7])
    maps = EXPLAINERS.build(name)(m, x, target)
    one = EXPLAINERS.build(name)(m, x[1:2], target[1:2])
    assert maps.shape == (3, SIZE, SIZE) and torch.isfinite(maps).all() and maps.amax() > 0
    torch.testing.assert_close(maps[1:2], one, rtol=1e-4, atol=1e-5 * float(maps.abs().max()))


def test_cam_equals_head_weights_times_activations():
    m, x = model("resnet18"), images()
    target = torch.tensor([2, 5, 9])
    with torch.no_grad(), m.capture("layer4") as cap:
        logits = m(x)
    acts = cap.activation
    w = m.module.fc.weight[target]
    by_hand = torch.einsum("bk,bkhw->bhw", w, acts)
    # the class score is the map's spatial mean plus the bias (Zhou et al. 2016, eq. for S_c)
    torch.testing.assert_close(by_hand.mean((1, 2)) + m.module.fc.bias[target], logits.gather(1, target[:, None])[:, 0])
    maps = EXPLAINERS.build("cam")(m, x, target)
    torch.testing.assert_close(maps, upsample(by_hand, (SIZE, SIZE)))
    assert (maps < 0).any()  # CAM keeps the sign


def test_cam_is_gradcam_before_relu_on_gap_linear_head():
    m, x = model("resnet18"), images()
    target = top1(m, x)
    cam = EXPLAINERS.build("cam")(m, x, target)
    grad = EXPLAINERS.build("gradcam")(m, x, target)
    # layer4 is 2×2 at 64²: ∂y_c/∂A_kij = w_ck / 4 everywhere, so Grad-CAM = ReLU(CAM) / 4
    torch.testing.assert_close(torch.relu(cam) / 4, grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("arch", ["densenet121", "mobilenet_v2"])
def test_cam_on_other_gap_linear_heads(arch):
    m, x = model(arch), images(2)
    target = top1(m, x)
    cam = EXPLAINERS.build("cam")(m, x, target)
    hires = EXPLAINERS.build("hirescam")(m, x, target)
    # on a (ReLU +) GAP + linear head, ∂y_c/∂A_kij = w_ck·[A_kij > 0] / (h·w): HiResCAM = ReLU(CAM) / 4 at 2×2
    # (Draelos & Carin 2020, §3); relative tolerance: random-weight maps can be tiny
    torch.testing.assert_close(torch.relu(cam) / 4, hires, rtol=1e-3, atol=1e-4 * float(hires.abs().max()))


@pytest.mark.parametrize("arch,why", [("vgg11", "not the global average"), ("convnext_tiny", "not the global average"),
                                      ("mobilenet_v3_small", "not the global average")])
def test_cam_refuses_other_heads(arch, why):
    m = model(arch)
    with pytest.raises(LayerError, match="global-average-pool \\+ linear") as e:
        EXPLAINERS.build("cam")(m, images(1), torch.tensor([0]))
    assert why in str(e.value) or "not the model's logits" in str(e.value) or "features" in str(e.value)


def test_unknown_layer_is_a_layer_error():
    with pytest.raises(LayerError, match="layer4"):
        EXPLAINERS.build("gradcam", layer="layer5")(model("resnet18"), images(1), torch.tensor([0]))


def test_typed_parameters_are_listed():
    for name in ["cam", *ORACLES]:
        assert EXPLAINERS.get(name).params["layer"] == (str, "auto")

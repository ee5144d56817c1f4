"""Every gradient, perturbation and relevance explainer runs on the built-in model and on
torchvision ResNet, VGG-BN and DenseNet (random weights; VGG and DenseNet narrow): finite (B,H,W)
maps, not all zero, hooks removed and forward outputs unchanged afterwards."""

import pytest
import torch
from saliency_models import narrow_densenet, narrow_vgg_bn

from xaibench.models.zoo import load_model
from xaibench.saliency.base import EXPLAINERS

FAST_PARAMS = {
    "saliency": {}, "inputxgrad": {}, "guided_backprop": {}, "deconvnet": {}, "guided_gradcam": {},
    "integrated_gradients": {"steps": 2}, "smoothgrad": {"n_samples": 2}, "vargrad": {"n_samples": 2},
    "occlusion": {"window": 16, "stride": 16}, "rise": {"n_masks": 4, "cell_size": 16},
    "lrp": {}, "clrp": {}, "relevancecam": {}, "cfcam": {"blur_kernel": 11, "blur_sigma": 5.0, "chunk_size": 256},
}

RELU_OUTPUT = {"guided_gradcam", "clrp", "relevancecam", "cfcam"}


FAMILIES = {  # name: (model factory, input size)
    "builtin:synthetic-cnn": (lambda: load_model("builtin:synthetic-cnn", weights="none"), 64),
    "torchvision:resnet18": (lambda: load_model("torchvision:resnet18", weights="none", num_classes=10), 32),
    # torchvision's VGG-BN and DenseNet classes, narrow: the families' structure at a fraction of the cost
    "vgg_bn": (narrow_vgg_bn, 32),
    "densenet": (narrow_densenet, 32),
}


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_explainer_runs_on_the_model_families(family):
    torch.manual_seed(0)
    factory, size = FAMILIES[family]
    model = factory()
    model.input_size = (size, size)  # `auto` layers resolve at this size (a block with spatial output > 1)
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        before = model(x)
    target = before.argmax(1)
    for name, params in FAST_PARAMS.items():
        explainer = EXPLAINERS.build(name, **params)
        maps = explainer(model, x, target)
        assert maps.shape == (1, size, size), name
        assert torch.isfinite(maps).all(), name
        if name not in RELU_OUTPUT:  # a ReLU-ed map of an untrained net may be all zero
            assert maps.abs().sum() > 0, name
        if name == "cfcam":
            assert explainer.diagnostics["channels_scored"].sum() > 0
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.module.modules())
    with torch.no_grad():
        assert torch.allclose(model(x), before, atol=1e-5)

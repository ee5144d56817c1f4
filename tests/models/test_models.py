"""The model zoo and ModelAdapter: loading, default layers, capture, pass counting."""

from __future__ import annotations

import pytest
import torch

from xaibench import ModelAdapter, load_model
from xaibench.errors import LayerError, ModelError


@pytest.mark.parametrize(
    "arch, layer",
    [("resnet18", "layer4"), ("vgg11", "features"), ("densenet121", "features"), ("mobilenet_v3_small", "features"),
     ("efficientnet_b0", "features"), ("convnext_tiny", "features")],
)
def test_auto_layer_is_last_conv_block(arch, layer):
    assert load_model(f"torchvision:{arch}", weights="none").resolve_layer("auto") == layer


def test_local_checkpoint_loads_with_weights_only(tmp_path):
    src = load_model("torchvision:resnet18", weights="none")
    path = tmp_path / "r18.pt"
    torch.save(src.module.state_dict(), path)
    loaded = load_model("torchvision:resnet18", weights=str(path))
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(loaded(x), src(x))


def test_mismatched_checkpoint_is_a_model_error(tmp_path):
    path = tmp_path / "r18.pt"
    torch.save(load_model("torchvision:resnet18", weights="none").module.state_dict(), path)
    with pytest.raises(ModelError, match="do not fit the architecture"):
        load_model("torchvision:resnet34", weights=str(path))


def test_missing_weights_file():
    with pytest.raises(ModelError, match="weights file not found"):
        load_model("torchvision:resnet18", weights="/nonexistent/w.pth")


def test_enum_weights_offline_say_how_to_supply_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty cache

    def no_network(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(ModelError, match=r"cannot load torchvision weights resnet18\.IMAGENET1K_V1.*weights: path/to/file"):
        load_model("torchvision:resnet18", weights="IMAGENET1K_V1")


def test_unknown_names():
    with pytest.raises(ModelError, match="Did you mean 'resnet18'"):
        load_model("torchvision:resnet81", weights="none")
    with pytest.raises(ModelError, match="unknown weights for resnet18 'IMAGENET_V9'"):
        load_model("torchvision:resnet18", weights="IMAGENET_V9")
    with pytest.raises(ModelError, match="unknown model family 'torchvison'. Did you mean 'torchvision'"):
        load_model("torchvison:resnet18")


def test_bad_layer_name_suggests():
    m = load_model("torchvision:resnet18", weights="none")
    with pytest.raises(LayerError, match="no layer 'layer5'. Did you mean 'layer4'"):
        m.resolve_layer("layer5")


def test_capture_removes_hooks_even_on_error():
    m = load_model("torchvision:resnet18", weights="none")
    module = m.layers()["layer4"]
    with pytest.raises(RuntimeError), m.capture("layer4"):
        raise RuntimeError("boom")
    assert not module._forward_hooks


def test_capture_gives_layer_gradient_without_parameter_grads():
    m = load_model("torchvision:resnet18", weights="none")
    x = torch.randn(2, 3, 32, 32)
    with torch.enable_grad(), m.capture(["layer3", "layer4"]) as cap:
        logits = m(x)
        (g,) = torch.autograd.grad(logits[:, 0].sum(), cap.activations["layer4"])
    assert g.shape == cap.activations["layer4"].shape
    assert all(p.grad is None for p in m.parameters())
    assert cap.activations["layer3"].shape[1] == 256


def test_pass_counter_counts_images():
    m = ModelAdapter.wrap(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)), mean=(0, 0, 0), std=(1, 1, 1))
    x = torch.randn(5, 3, 2, 2, requires_grad=True)
    m(x).sum().backward()
    with torch.no_grad():
        m(x[:2])
    assert (m.counter.forward_images, m.counter.backward_images) == (7, 5)


def test_normalize_roundtrip():
    m = load_model("torchvision:resnet18", weights="none")
    p = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(m.denormalize(m.normalize(p)), p)


def test_inference_forward_in_channels_last_matches_and_falls_back():
    """No-grad CPU forwards run channels-last (faster on oneDNN) with the same logits; a model
    that .view()s its NCHW input makes the adapter fall back to the plain layout for good."""
    import xaibench as xb

    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(8, 4))
    model = xb.ModelAdapter.wrap(conv, mean=(0, 0, 0), std=(1, 1, 1))
    x = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        fast = model(x)
    assert model.channels_last
    model.channels_last = False
    with torch.no_grad():
        torch.testing.assert_close(fast, model(x), rtol=1e-5, atol=1e-6)

    class Viewing(torch.nn.Module):
        def forward(self, x):
            return x.view(x.shape[0], -1)[:, :4]

    viewing = xb.ModelAdapter.wrap(Viewing(), mean=(0, 0, 0), std=(1, 1, 1))
    with torch.no_grad():
        out = viewing(x)
    assert not viewing.channels_last
    torch.testing.assert_close(out, x.reshape(5, -1)[:, :4])
    # an error of the model itself (here: wrong input channels) is raised and keeps the layout
    with pytest.raises(RuntimeError):
        model(torch.randn(2, 4, 16, 16))
    model.channels_last = True
    with pytest.raises(RuntimeError):
        model(torch.randn(2, 4, 16, 16))
    assert model.channels_last

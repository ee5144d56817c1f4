"""The caller's module is never changed: after wrap, explain, evaluate, probe and visualize it has the
requires_grad flags, train/eval modes, parameter and buffer values, hooks and memory format it had."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import xaibench as xb
from xaibench.datasets.base import Batch
from xaibench.errors import ModelError


class Net(nn.Module):
    def __init__(self, in_channels: int = 3, classes: int = 4):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.BatchNorm2d(8), nn.ReLU())
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        return self.fc(self.drop(self.block(self.stem(x)).mean((2, 3))))


def user_model() -> tuple[nn.Module, list[int]]:
    """A partially frozen model in train mode, its stem channels-last, with a user's forward hook."""
    torch.manual_seed(0)
    net = Net()
    net.stem.requires_grad_(False)  # frozen backbone part, trainable rest
    net.stem.to(memory_format=torch.channels_last)
    net.block[1].eval()  # one BatchNorm deliberately in eval mode inside a training model
    calls: list[int] = []
    net.fc.register_forward_hook(lambda mod, inp, out: calls.append(out.shape[0]))
    return net.train(), calls


def snapshot(net: nn.Module) -> dict:
    return {
        "modes": [(n, m.training) for n, m in net.named_modules()],
        "flags": [(n, p.requires_grad) for n, p in net.named_parameters()],
        "grads": [(n, p.grad) for n, p in net.named_parameters()],
        "values": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "strides": [(n, p.stride()) for n, p in net.named_parameters()],
        "hooks": [(n, list(m._forward_hooks), list(m._forward_pre_hooks), list(m._backward_hooks))
                  for n, m in net.named_modules()],
        "ids": [(n, id(p)) for n, p in net.named_parameters()],
    }


def assert_same(before: dict, after: dict) -> None:
    for key in ("modes", "flags", "strides", "hooks", "ids"):
        assert after[key] == before[key], key
    assert all(g is None for _, g in after["grads"]), "a parameter gradient was computed"
    assert before["values"].keys() == after["values"].keys()
    for k, v in before["values"].items():
        assert torch.equal(after["values"][k], v), f"{k} changed"


def test_wrap_explain_evaluate_probe_visualize_leave_the_module_as_it_was():
    net, calls = user_model()
    before = snapshot(net)
    model = xb.ModelAdapter.wrap(net, mean=(0.5,) * 3, std=(0.25,) * 3, input_size=16)
    assert_same(before, snapshot(net))
    x = model.normalize(torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)))
    target = torch.tensor([0, 3])
    for name in ("gradcam", "saliency", "guided_backprop", "lrp", "occlusion"):
        params = {"window": 8, "stride": 8} if name == "occlusion" else {}
        maps = xb.explain(model, x, target, name, **params)
        assert maps.shape == (2, 16, 16)
        assert_same(before, snapshot(net))
    for name in ("deletion", "insertion", "randomization"):  # fused copies; re-initialized weights
        params = {"steps": 4} if name != "randomization" else {}
        xb.evaluate(model, x, maps, target, name, explain=lambda m, xs, t: xb.explain(m, xs, t, "saliency"), **params)
        assert_same(before, snapshot(net))
    batch = Batch(model.denormalize(x), target, ["a", "b"], torch.arange(2), [None, None], None, [None, None])
    xb.probe(model, [batch], "feature_purity")
    assert_same(before, snapshot(net))
    xb.visualize(model, targets=[1], steps=2)
    assert_same(before, snapshot(net))
    assert calls, "the user's hook ran during the forwards"
    # the model still trains afterwards: the next library's backward reaches the trainable parameters
    out = net(torch.randn(2, 3, 16, 16).contiguous(memory_format=torch.channels_last))
    out.sum().backward()
    assert net.fc.weight.grad is not None and net.stem[0].weight.grad is None


def test_inference_context_restores_on_error_and_nests():
    net, _ = user_model()
    before = snapshot(net)
    model = xb.ModelAdapter.wrap(net, mean=(0.5,) * 3, std=(0.25,) * 3, input_size=16)
    with pytest.raises(RuntimeError, match="boom"), model.inference():
        with model.inference():
            assert not any(m.training for m in net.modules())
            assert not any(p.requires_grad for p in net.parameters())
        assert not any(m.training for m in net.modules())  # the inner exit leaves the outer state
        raise RuntimeError("boom")
    assert_same(before, snapshot(net))


def test_eval_forward_in_train_mode_model_matches_eval_outputs():
    """Inside the adapter, BatchNorm uses its running statistics and dropout is off, whatever the
    module's own mode: the logits equal those of the module in eval mode, and stay deterministic."""
    net, _ = user_model()
    model = xb.ModelAdapter.wrap(net, mean=(0.5,) * 3, std=(0.25,) * 3, input_size=16)
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        got = model(x)
        net.eval()
        want = net(x)
    torch.testing.assert_close(got, want)


def test_channels_come_from_mean_and_std():
    one = Net(in_channels=1)
    four = Net(in_channels=4)
    m1 = xb.ModelAdapter.wrap(one, mean=(0.5,), std=(0.25,), input_size=16)
    m4 = xb.ModelAdapter.wrap(four, mean=(0.5,) * 4, std=(0.25,) * 4, input_size=16)
    assert (m1.channels, m4.channels) == (1, 4)
    assert m4.resolve_layer("auto") == "block"  # the dry run feeds 4 channels
    maps = xb.explain(m4, torch.randn(2, 4, 16, 16), 1, "gradcam")
    assert maps.shape == (2, 16, 16)
    grey = m1.normalize(torch.full((1, 3, 4, 4), 0.5))  # RGB pixels for a 1-channel model: luma
    assert grey.shape == (1, 1, 4, 4) and torch.allclose(grey, torch.zeros_like(grey))
    with pytest.raises(ModelError, match=r"first convolution 'stem.0' takes 4 input channels, but mean/std have 3"):
        xb.ModelAdapter.wrap(four, input_size=16)
    with pytest.raises(ModelError, match="mean has 2 values and std 3"):
        xb.ModelAdapter.wrap(one, mean=(0.5, 0.5), std=(0.2, 0.2, 0.2))


def test_fused_copy_leaves_the_module_as_it_was():
    """Deletion runs the BatchNorm-folded fx copy (no user hook here): the module is untouched."""
    torch.manual_seed(0)
    net = Net().train()
    net.stem.requires_grad_(False)
    before = snapshot(net)
    model = xb.ModelAdapter.wrap(net, mean=(0.5,) * 3, std=(0.25,) * 3, input_size=16)
    x = torch.randn(2, 3, 16, 16)
    xb.evaluate(model, x, torch.rand(2, 16, 16), 1, "deletion", steps=4)
    assert model.fused._folded is not None  # the folded copy was built and used
    assert_same(before, snapshot(net))


def test_another_library_runs_on_the_same_module_afterwards():
    """The issue's scenario: wrap a torchvision ResNet, explain it, then run pytorch-grad-cam on the same
    module (it needs parameters that require grad: frozen ones made it fail with 'element 0 of tensors
    does not require grad')."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchvision.models import resnet18

    torch.manual_seed(0)
    net = resnet18(num_classes=3).eval()
    model = xb.ModelAdapter.wrap(net, input_size=32)
    x = torch.randn(2, 3, 32, 32)
    ours = xb.explain(model, x, 1, "gradcam")
    assert all(p.requires_grad for p in net.parameters())
    with GradCAM(model=net, target_layers=[net.layer4]) as cam:
        theirs = torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(1)] * 2))
    assert theirs.shape == ours.shape

"""Small random-weight models and oracle helpers shared by the CAM-family tests (not a test file)."""

from __future__ import annotations

import copy
from functools import cache

import torch
import torchvision.models as tvm

from xaibench.models.adapter import ModelAdapter

SIZE = 64
# architecture -> the layer the tests explain (the auto layer, checked in test_cam.py)
ARCHS = {
    "resnet18": "layer4",
    "vgg11": "features",
    "densenet121": "features",
    "mobilenet_v3_small": "features",
    "efficientnet_b0": "features",
    "convnext_tiny": "features",
}


@cache
def model(arch: str) -> ModelAdapter:
    torch.manual_seed(0)
    return ModelAdapter.wrap(tvm.get_model(arch, weights=None, num_classes=10).eval(), input_size=SIZE, name=arch)


def images(n: int = 3, seed: int = 1, size: int = SIZE) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g)


def top1(m: ModelAdapter, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return m(x).argmax(1)


def grad_module(m: ModelAdapter) -> torch.nn.Module:
    """A copy of the wrapped module with trainable parameters (the reference libraries need
    `loss.backward()` to reach the layer, which frozen parameters and a plain input prevent)."""
    mod = copy.deepcopy(m.module).eval()
    for p in mod.parameters():
        p.requires_grad_(True)
    return mod


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image Pearson correlation of (B,H,W) maps."""
    a = torch.as_tensor(a, dtype=torch.float64).flatten(1)
    b = torch.as_tensor(b, dtype=torch.float64).flatten(1)
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def module_named(mod: torch.nn.Module, name: str) -> torch.nn.Module:
    return dict(mod.named_modules())[name]


class Tiny(torch.nn.Module):
    """conv-relu-conv-relu ("features", 16 channels at 1/4 resolution) → GAP → linear; channels
    12-15 have a -100 bias, so their post-ReLU maps are all zero (constant)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
        )
        with torch.no_grad():
            self.features[2].bias[12:] = -100.0
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


@cache
def tiny() -> ModelAdapter:
    return ModelAdapter.wrap(Tiny().eval(), input_size=32, name="tiny")

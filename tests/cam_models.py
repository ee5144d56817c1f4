"""Small random-weight models and oracle helpers shared by the CAM-family tests (not a test file):
torchvision architectures and hand-built heads whose gradient varies over the explained layer."""

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
    """A copy of the wrapped module whose first parameter is trainable (the reference libraries need
    `loss.backward()` to reach the layer, which frozen parameters and a plain input prevent; one
    trainable parameter at the input end suffices and spares the weight gradients of the head)."""
    mod = copy.deepcopy(m.module).eval()
    for i, p in enumerate(mod.parameters()):
        p.requires_grad_(i == 0)
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


class HeadNet(torch.nn.Module):
    """conv-relu-conv ("features": 16 channels at 1/4 resolution, 8×8 at 32 px) → `head`. With
    `relu` the features end in a ReLU (non-negative maps), else they keep both signs."""

    def __init__(self, head: torch.nn.Module, relu: bool = True):
        super().__init__()
        torch.manual_seed(0)
        layers = [torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)]
        self.features = torch.nn.Sequential(*layers, *([torch.nn.ReLU()] if relu else []))
        self.head = head

    def forward(self, x):
        return self.head(self.features(x))


class ReLUGAPLinear(torch.nn.Module):
    """DenseNet's head: ReLU → global average pool → linear."""

    def __init__(self, k: int = 16, classes: int = 10):
        super().__init__()
        self.fc = torch.nn.Linear(k, classes)

    def forward(self, a):
        return self.fc(torch.relu(a).mean((2, 3)))


HEADS = {  # heads on 8×8 features whose gradient at the features varies over positions
    "spatial_linear": lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16 * 8 * 8, 10)),
    "max_pool": lambda: torch.nn.Sequential(torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16 * 4 * 4, 10)),
    "relu_gap_linear": ReLUGAPLinear,
    "gap_linear": lambda: torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10)),
}


@cache
def head_net(head: str, relu: bool = True) -> ModelAdapter:
    """A HeadNet with one of HEADS (32-px input, explained layer `features`, 8×8)."""
    with torch.random.fork_rng():  # the head's weights must not depend on which tests ran before
        torch.manual_seed(1)
        head_module = HEADS[head]()
    return ModelAdapter.wrap(HeadNet(head_module, relu=relu).eval(), input_size=32, name=f"headnet:{head}")


@cache
def small_densenet() -> ModelAdapter:
    """torchvision's DenseNet (its head: norm5, in-place ReLU, pool, linear) with few channels, at 224 px
    so that `features.denseblock4` is 7×7."""
    torch.manual_seed(0)
    net = tvm.DenseNet(growth_rate=8, block_config=(2, 2, 2, 2), num_init_features=16, bn_size=2, num_classes=10)
    return ModelAdapter.wrap(net.eval(), input_size=224, name="densenet-small")


@cache
def calibrated(arch: str, size: int) -> ModelAdapter:
    """A copy of `model(arch)` with healthy activation and gradient scales at `size` px: BatchNorm
    statistics re-estimated on 4 random images, the last linear layer's weights × 100."""
    net = copy.deepcopy(model(arch).module)
    for mod in net.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.reset_running_stats()
            mod.momentum = None  # a plain average over the calibration batch
    net.train()
    with torch.no_grad():
        net(images(4, seed=5, size=size))
        [mod for mod in net.modules() if isinstance(mod, torch.nn.Linear)][-1].weight.mul_(100.0)
    return ModelAdapter.wrap(net.eval(), input_size=size, name=f"{arch}-calibrated")


@cache
def sharp_tiny() -> ModelAdapter:
    """`Tiny` with its linear head × 100: the class logit of a masked input moves by units from channel
    to channel, so Score-CAM's softmax weights are far from uniform and its noise-averaged sibling
    SS-CAM (std 2, two samples) gives a clearly different map (Pearson ~0.86, not 0.99998)."""
    net = Tiny()
    with torch.no_grad():
        net.fc.weight.mul_(100.0)
        net.fc.bias.mul_(100.0)
    return ModelAdapter.wrap(net, input_size=32, name="tiny-sharp")

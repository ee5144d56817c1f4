"""`fashion-mnist-vgg`: a small VGG-style CNN trained on Fashion-MNIST with the shipped checkpoint
`fashion_mnist_vgg.pt` (trained by `scripts/train_fashion_mnist.py`; its test accuracy is in the .json beside it).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..errors import ModelError
from .adapter import ModelAdapter
from .zoo import MODELS, apply_state_dict, load_state_dict

CHECKPOINT = Path(__file__).with_name("fashion_mnist_vgg.pt")
CHECKPOINT_INFO = CHECKPOINT.with_suffix(".json")
FASHION_MEAN = (0.2860,) * 3  # Fashion-MNIST training-set pixel mean and std (Xiao et al. 2017)
FASHION_STD = (0.3530,) * 3
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
INPUT_SIZE = 28
LAST_CONV_LAYER = "features.relu3_2"


class FashionVGG(nn.Module):
    """VGG-style CNN (Simonyan & Zisserman, ICLR 2015): blocks of 3×3 conv-BN-ReLU (1, 2 and 2 convolutions),
    2×2 max-pooling between blocks, then global average pooling and one linear layer (the CAM head of Zhou et
    al., CVPR 2016), so CAM is exact on the last block (7×7 at the 28×28 input)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, widths: tuple[int, ...] = (16, 32, 64),
                 depths: tuple[int, ...] = (1, 2, 2)):
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        c = in_channels
        for b, (width, depth) in enumerate(zip(widths, depths), 1):
            for k in range(1, depth + 1):
                layers[f"conv{b}_{k}"] = nn.Conv2d(c, width, 3, padding=1, bias=False)
                layers[f"bn{b}_{k}"] = nn.BatchNorm2d(width)
                layers[f"relu{b}_{k}"] = nn.ReLU()
                c = width
            if b < len(widths):
                layers[f"pool{b}"] = nn.MaxPool2d(2)
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def checkpoint_info() -> dict[str, Any]:
    """What the training command recorded about the shipped checkpoint (test accuracy, epochs, seconds, ...)."""
    if not CHECKPOINT_INFO.is_file():
        return {}
    return json.loads(CHECKPOINT_INFO.read_text())


@MODELS.register("fashion-mnist-vgg")
def fashion_mnist_vgg(arch: str | None, weights: str | None = "default") -> ModelAdapter:
    """A small VGG-style CNN for Fashion-MNIST (Xiao et al. 2017) at 28×28, 3 channels (grey repeated).
    `weights`: `default` = the checkpoint shipped with xaibench, `none` = random, or a state-dict file."""
    if arch is not None:
        raise ModelError(f"fashion-mnist-vgg takes no architecture suffix (got ':{arch}')")
    module = FashionVGG()
    w = "none" if weights is None else str(weights)
    if w.lower() == "default":
        if not CHECKPOINT.is_file():
            raise ModelError(f"the shipped checkpoint {CHECKPOINT} is missing: run scripts/train_fashion_mnist.py")
        apply_state_dict(module, load_state_dict(CHECKPOINT), str(CHECKPOINT))
    elif w.lower() != "none":
        apply_state_dict(module, load_state_dict(w), w)
    return ModelAdapter(module, FASHION_MEAN, FASHION_STD, input_size=INPUT_SIZE, class_names=FASHION_CLASSES,
                        name="fashion-mnist-vgg", default_layer=LAST_CONV_LAYER)

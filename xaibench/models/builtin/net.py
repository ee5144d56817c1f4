"""SyntheticCNN: the small residual network shipped as xaibench's default model (`builtin:synthetic-cnn`).

A ResNet (He et al., CVPR 2016) in miniature — stem, four stages of torchvision BasicBlocks,
global average pooling and one linear layer — so CAM (Zhou et al., CVPR 2016) and all its variants apply.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class SyntheticCNN(nn.Module):
    """stem (3×3 conv stride 2) → stage1 (stride 1) → stage2..stage4 (stride 2 each) → pool → fc.

    At 128×128 input the stages output 64², 32², 16² and 8² maps; `stage4` is the CAM layer.
    Blocks are torchvision's `BasicBlock` (so Zennit's ResNet canonizer applies); every ReLU is
    made non-inplace so backward hooks (guided backprop, LRP) see unmodified tensors.
    """

    def __init__(
        self,
        num_classes: int = 10,
        widths: Sequence[int] = (16, 32, 64, 128),
        strides: Sequence[int] = (1, 2, 2, 1),
        blocks: int = 1,
    ):
        from torchvision.models.resnet import BasicBlock  # here: importing torchvision costs ~2 s of CLI start-up

        super().__init__()
        self.widths = tuple(widths)
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        inplanes = widths[0]
        for i, (width, stride) in enumerate(zip(widths, strides)):
            layers = []
            for b in range(blocks):
                s = stride if b == 0 else 1
                down = None
                if s != 1 or inplanes != width:
                    down = nn.Sequential(nn.Conv2d(inplanes, width, 1, stride=s, bias=False), nn.BatchNorm2d(width))
                layers.append(BasicBlock(inplanes, width, stride=s, downsample=down))
                inplanes = width
            setattr(self, f"stage{i + 1}", nn.Sequential(*layers))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.ReLU):
                m.inplace = False
            elif isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for block in self.modules():  # zero-init the last BN of each residual branch (Goyal et al., 2017)
            if isinstance(block, BasicBlock):
                nn.init.zeros_(block.bn2.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        x = self.stage1(x)
        x = self.stage2(x)
        x = self.stage3(x)
        x = self.stage4(x)
        return self.fc(torch.flatten(self.pool(x), 1))

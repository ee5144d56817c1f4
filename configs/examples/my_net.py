"""An example of your own model code for `python:configs/examples/my_net.py:build`
(configs/examples/my-model.yaml): any function that returns a torch.nn.Module classifier."""

import torch
from torch import nn


class MyNet(nn.Module):
    """Three conv-BN-ReLU blocks, global average pooling and a linear head."""

    def __init__(self, classes: int, width: int):
        super().__init__()
        blocks, c = [], 3
        for w in (width, 2 * width, 4 * width):
            blocks += [nn.Conv2d(c, w, 3, padding=1, stride=2), nn.BatchNorm2d(w), nn.ReLU()]
            c = w
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


def build(classes: int = 2, width: int = 16) -> nn.Module:
    """The factory xaibench calls with `model.params` as keyword arguments."""
    return MyNet(classes, width)

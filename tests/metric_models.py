"""Hand-built models with known answers for the metric tests."""

import torch
from torch import nn

from xaibench.models.adapter import ModelAdapter


class RegionMean(nn.Module):
    """Logits [mean of the input over `region` (all channels), 0]: class 0's score is known in closed form."""

    def __init__(self, region: torch.Tensor):
        super().__init__()
        self.register_buffer("region", region.float())
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        s = (x * self.region).sum(dim=(1, 2, 3)) / (self.region.sum() * x.shape[1])
        return torch.stack([s, torch.zeros_like(s)], dim=1) + 0 * self.dummy


def region_model(h: int, w: int, box: tuple[int, int, int, int]) -> tuple[ModelAdapter, torch.Tensor]:
    """A RegionMean model on identity normalization and its (h,w) bool region (y0,y1,x0,x1)."""
    region = torch.zeros(h, w, dtype=torch.bool)
    y0, y1, x0, x1 = box
    region[y0:y1, x0:x1] = True
    model = ModelAdapter(RegionMean(region), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=(h, w))
    return model, region


def small_cnn(classes: int = 5, seed: int = 0) -> nn.Module:
    """A tiny random conv net (deterministic weights) for oracle comparisons."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, classes),
    ).eval()

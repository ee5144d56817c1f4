"""Hand-built models with known answers for the metric tests, and the documented tie-break
permutation re-derived independently of the metrics package."""

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


def documented_permutation(n: int, key, seed: int = 0) -> torch.Tensor:
    """The tie-break permutation docs/metrics.md "Ties" describes, re-derived here (not through
    xaibench.metrics.ordering): `randperm(n)` from the seed crc32(f"{seed}:{key}"), key = the
    image's runner seed (or its batch position without one)."""
    import zlib

    return torch.randperm(n, generator=torch.Generator().manual_seed(zlib.crc32(f"{seed}:{key}".encode())))


def runner_seed(run_seed: int, image_id: str) -> int:
    """The per-image seed the runner hands to metrics: crc32(f"{run seed}:{image id}")."""
    import zlib

    return zlib.crc32(f"{run_seed}:{image_id}".encode())

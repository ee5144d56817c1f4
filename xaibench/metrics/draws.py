"""Per-image random draws of the stochastic metrics (noise, random subsets, random classes): one CPU
generator per image, keyed by the runner's per-image seed, so an image's draws never depend on its batch.
"""

from __future__ import annotations

import zlib

import torch
from torch import Tensor

from .ordering import tie_seeds


def image_generators(seed: int, seeds: Tensor | None, b: int, purpose: str) -> list[torch.Generator]:
    """One CPU generator per image, seeded with crc32(f"{tie seed}:{purpose}") — the image's tie seed
    (`ordering.tie_seeds`: the metric's `seed` and the runner's per-image seed, or the batch position
    without one) and the draw's purpose (e.g. "noise"), so different draws of one image are independent."""
    keys = tie_seeds(seed, seeds, b).tolist()
    return [torch.Generator().manual_seed(zlib.crc32(f"{k}:{purpose}".encode())) for k in keys]


def uniform_draw(generators: list[torch.Generator], shape: tuple[int, ...], low: float, high: float) -> Tensor:
    """(N, *shape) float32: row r uniform on [low, high) from `generators[r]` (advances it; a generator
    may appear in several rows, drawn in row order), written in place into one CPU tensor."""
    out = torch.empty(len(generators), *shape)
    for row, g in zip(out, generators):
        row.uniform_(low, high, generator=g)
    return out


def normal_draw(generators: list[torch.Generator], shape: tuple[int, ...], std: float) -> Tensor:
    """(N, *shape) float32: row r normal N(0, std²) from `generators[r]` (advances it, rows in order)."""
    out = torch.empty(len(generators), *shape)
    for row, g in zip(out, generators):
        row.normal_(0.0, 1.0, generator=g)
    return out.mul_(std)

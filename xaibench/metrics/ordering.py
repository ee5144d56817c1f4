"""Pixel orderings of saliency maps shared by the metrics: ties are broken by a fixed seeded
random permutation, never by pixel index (index order biases deletion curves toward the top).
"""

from __future__ import annotations

import torch
from torch import Tensor


def tie_permutation(n: int, seed: int, device: torch.device) -> Tensor:
    """The fixed random permutation of `n` pixel indices used to break ties (seeded, on CPU, so the
    same on every device)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).to(device)


def saliency_order(maps: Tensor, seed: int = 0, descending: bool = True) -> Tensor:
    """(B,H,W) maps → (B,H·W) flat pixel indices sorted by saliency (docs/metrics.md: ties broken by
    a seeded random permutation). NaN must be cleaned first (`clean_maps`)."""
    flat = maps.reshape(maps.shape[0], -1)
    perm = tie_permutation(flat.shape[1], seed, flat.device)
    order_in_perm = torch.argsort(flat[:, perm], dim=1, descending=descending, stable=True)
    return perm[order_in_perm]


def saliency_rank(maps: Tensor, seed: int = 0, descending: bool = True) -> Tensor:
    """(B,H·W) rank of every pixel in `saliency_order` (0 = most salient when descending)."""
    order = saliency_order(maps, seed, descending)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return rank


def saliency_argmax(maps: Tensor, seed: int = 0) -> Tensor:
    """(B,) flat index of each map's maximum, ties broken by the seeded permutation."""
    flat = maps.reshape(maps.shape[0], -1)
    perm = tie_permutation(flat.shape[1], seed, flat.device)
    permuted = flat[:, perm]
    is_max = permuted == permuted.amax(dim=1, keepdim=True)
    return perm[is_max.to(torch.uint8).argmax(dim=1)]

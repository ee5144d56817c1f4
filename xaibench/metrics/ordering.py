"""Pixel orderings of saliency maps shared by the metrics: ties are broken by a seeded random
permutation per image, never by pixel index (index order biases deletion curves toward the top).
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Iterable

import torch
from torch import Tensor

from ..errors import ConfigError


def image_seeds(seed: int, keys: Iterable) -> Tensor:
    """(B,) int64 seeds `zlib.crc32(f"{seed}:{key}")`, one per key. The runner keys images by their
    id (with the run's seed), so an image's seed is the same whatever batch it is in."""
    return torch.tensor([zlib.crc32(f"{int(seed)}:{k}".encode()) for k in keys], dtype=torch.int64)


def tie_seeds(seed: int, seeds: Tensor | None, b: int) -> Tensor:
    """The per-image tie-break seeds of a metric whose `seed` parameter is `seed`: keyed by the
    per-image `seeds` the runner hands over (run seed and image id), or by the position 0…B−1 in
    the batch when called without them (docs/metrics.md "Ties")."""
    if seeds is not None and len(seeds) != b:
        raise ConfigError(f"seeds: got {len(seeds)} per-image seeds for {b} maps (one per image)")
    return image_seeds(seed, seeds.tolist() if seeds is not None else range(b))


@functools.lru_cache(maxsize=128)
def permutation(n: int, seed: int) -> Tensor:
    """One image's tie permutation of `n` pixel indices, drawn on the CPU (so the same on every
    device) and cached: a run scores each image with every explainer and metric, which share its
    seed, and a 224² draw costs ~10-30 ms (int32: 200 KB each at 224², 25 MB for the whole cache)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(torch.int32)


def tie_permutations(n: int, seeds: Tensor, device: torch.device) -> Tensor:
    """(B,n) int64 random permutations of `n` pixel indices, row i drawn from `seeds[i]`."""
    if len(seeds) == 0:
        return torch.empty(0, n, dtype=torch.int64, device=device)
    return torch.stack([permutation(n, s) for s in seeds.tolist()]).to(device=device, dtype=torch.int64)


def saliency_order(maps: Tensor, seeds: Tensor, descending: bool = True) -> Tensor:
    """(B,H,W) maps → (B,H·W) flat pixel indices sorted by saliency, ties in the order of each
    image's permutation (`tie_permutations` of `seeds` (B,)). NaN must be cleaned first (`clean_maps`)."""
    flat = maps.reshape(maps.shape[0], -1)
    perm = tie_permutations(flat.shape[1], seeds, flat.device)
    order_in_perm = torch.argsort(flat.gather(1, perm), dim=1, descending=descending, stable=True)
    return perm.gather(1, order_in_perm)


def saliency_rank(maps: Tensor, seeds: Tensor, descending: bool = True) -> Tensor:
    """(B,H·W) rank of every pixel in `saliency_order` (0 = most salient when descending)."""
    order = saliency_order(maps, seeds, descending)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return rank


def saliency_argmax(maps: Tensor, seeds: Tensor) -> Tensor:
    """(B,) flat index of each map's maximum, ties broken by each image's permutation."""
    flat = maps.reshape(maps.shape[0], -1)
    perm = tie_permutations(flat.shape[1], seeds, flat.device)
    permuted = flat.gather(1, perm)
    is_max = permuted == permuted.amax(dim=1, keepdim=True)
    return perm.gather(1, is_max.to(torch.uint8).argmax(dim=1, keepdim=True)).squeeze(1)

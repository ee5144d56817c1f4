"""Tensor helpers shared by explainers, metrics, probes and featviz: inner-batch slicing, min-max
normalization, class scores, resizing, safe division, channel-weighted sums and seeded noise.

Pure tensor code on the input's device: no model, no plug-in, no numpy round trip.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor


def chunks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most `size` over range(n)."""
    size = max(1, int(size))
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def step_chunks(steps: int, batch: int, size: int) -> Iterator[tuple[slice, slice]]:
    """(steps, rows) pieces of the (step, image) grid of a batch — IG steps, noise samples, RISE
    masks — of at most `size` pairs: whole steps of the batch per piece while the batch fits,
    else one step over `size` images at a time. Step-major: a step's rows start at 0, where
    whatever the steps share (a noise draw, a mask) is made once."""
    for block in chunks(steps, max(1, int(size) // max(1, batch))):
        for rows in chunks(batch, size):
            yield block, rows


def minmax(maps: Tensor, dims: tuple[int, ...] = (-2, -1)) -> Tensor:
    """Min-max normalize over `dims` to [0,1]; a constant map becomes all zeros."""
    lo = maps.amin(dim=dims, keepdim=True)
    span = maps.amax(dim=dims, keepdim=True) - lo
    return torch.where(span > 0, (maps - lo) / span.clamp_min(torch.finfo(maps.dtype).tiny), torch.zeros_like(maps))


def minmax_(maps: Tensor) -> Tensor:
    """`minmax` over the last two dims, in place (a constant map gives (m − lo) = 0 exactly, so
    0 / tiny = 0 needs no select): for large temporary mask batches."""
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    span = maps.amax(dim=(-2, -1), keepdim=True).sub_(lo).clamp_min_(torch.finfo(maps.dtype).tiny)
    return maps.sub_(lo).div_(span)


def target_scores(logits: Tensor, target: Tensor) -> Tensor:
    """(B,) logit of each row's target class."""
    return logits.gather(1, target.view(-1, 1).to(logits.device)).squeeze(1)


def class_scores(logits: Tensor, target: Tensor, score: str) -> Tensor:
    """(B,) float32 score of each row's target class: its softmax probability (`softmax`), its own
    sigmoid (`sigmoid`: multi-label and binary models, `ModelAdapter.score_kind`) or its logit
    (`logit`); taken in float32 whatever the logits' dtype (autocast)."""
    logits = logits.float()
    if score == "softmax":
        return target_scores(logits.softmax(dim=1), target)
    scores = target_scores(logits, target)
    return scores.sigmoid() if score == "sigmoid" else scores


def upsample(maps: Tensor, size: tuple[int, int], mode: str = "bilinear") -> Tensor:
    """Resize (B,h,w) or (B,K,h,w) maps to `size`: `bilinear` (align_corners=False) or `nearest`."""
    squeeze = maps.dim() == 3
    m = maps.unsqueeze(1) if squeeze else maps
    if tuple(m.shape[-2:]) != tuple(size):
        m = F.interpolate(m, size=size, mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))
    return m.squeeze(1) if squeeze else m


def safe_divide(num: Tensor, den: Tensor) -> Tensor:
    """num / den where den ≠ 0, else 0 (the 0/0 cases of weight formulas)."""
    return torch.where(den != 0, num / torch.where(den != 0, den, torch.ones_like(den)), torch.zeros_like(num))


def assemble_cam(weights: Tensor, acts: Tensor, size: tuple[int, int], relu: bool = True,
                 mode: str = "bilinear") -> Tensor:
    """Σ_k w_k ⊙ A_k over channels (weights (B,K,1,1) or element-wise (B,K,h,w)), an optional
    ReLU, then upsampling to `size` (`mode`): the map assembly of every class activation map."""
    cam = (weights * acts).sum(1)
    return upsample(torch.relu(cam) if relu else cam, size, mode)


def standard_normal(draws: int, shape: tuple[int, ...], generator: torch.Generator, device: torch.device,
                    dtype: torch.dtype = torch.float32) -> Tensor:
    """(draws, *shape) standard-normal values from `generator`, drawn one `shape` block after the
    other: the stream a block gets does not depend on how many blocks are drawn at once (a
    sample's noise is the same whatever the chunking of the samples)."""
    out = torch.empty((draws, *shape), device=device, dtype=dtype)
    for block in out:
        block.normal_(generator=generator)
    return out

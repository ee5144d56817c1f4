"""CAMERAS: high-resolution CAMs from activations and gradients fused over upsampled inputs.

Forward+backward passes at growing input sizes; the fused maps are multiplied at input size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..memory import BACKWARD_FACTOR, ChunkSize, activation_bytes_per_image
from ..models.adapter import ModelAdapter
from ..models.gradients import layer_activations_and_gradients
from ..registry import param
from ..tensorops import chunks, upsample
from .base import EXPLAINERS, LAYER_HELP, Explainer, require_resizable


def cameras_sizes(size: tuple[int, int], step: int, max_size: int) -> list[tuple[int, int]]:
    """The input sizes: the original, then each side grown by `step` while below `max_size`
    (the official code's `range(224, 1000, 100)` for a 224 input)."""
    return [(size[0] + d, size[1] + d) for d in range(0, max(max_size - size[0], 1), step)]


@EXPLAINERS.register("cameras")
@dataclass
class CAMERAS(Explainer):
    """CAMERAS (Jalwana et al., CVPR 2021, eq. 4–6): the input is resized (`resize`, bicubic as in
    the authors' code) to each size of `cameras_sizes`; a size whose top-1 class is the
    original size's top-1 or the target is kept; activations A_t and gradients G_t = ∂y_c/∂A_t
    are upsampled (bilinear) to the input size and averaged over kept sizes:
    map = ReLU(Σ_k Ā_k ⊙ Ḡ_k). (The authors' final min-max normalization is display only and
    is left to metrics and figures.) Images run `chunk_size` at a time through every size and the
    fusion (`auto`: from the memory budget, counting the passes at the largest size); the fusion
    runs over `channel_chunk` channels at a time. Diagnostics: `valid_scales`."""

    needs: ClassVar[frozenset[str]] = frozenset({"resizable"})

    layer: str = param("auto", help=LAYER_HELP)
    step: int = param(100, help="px each side grows by from one input size to the next", ge=1)
    max_size: int = param(1000, help="sizes grow while below this side length, px", ge=1)
    resize: Literal["bicubic", "bilinear"] = param("bicubic", help="interpolation of the resized inputs")
    chunk_size: ChunkSize = param(8, help="images per pass through every size; auto: sized from the memory budget",
                                  ge=1)
    channel_chunk: int = param(128, help="channels fused at a time (bounds the memory of the fusion)", ge=1)

    def chunk_item_bytes(self, model: ModelAdapter, shape: tuple[int, ...]) -> int:
        """`chunk_size: auto` (memory.resolve_params): an image's pass at the largest size."""
        largest = cameras_sizes(tuple(shape[-2:]), self.step, self.max_size)[-1]
        grown = activation_bytes_per_image(model, (*shape[:-2], *largest)) - activation_bytes_per_image(model, shape)
        return int(BACKWARD_FACTOR * grown)

    def explain(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        layer = model.resolve_layer(self.layer)
        require_resizable(model, "cameras")
        target = target.to(x.device)
        maps, valid = zip(*(self.fuse(model, x[sl], target[sl], layer) for sl in chunks(x.shape[0], self.chunk_size)))
        self.diagnostics["valid_scales"] = torch.cat(valid)
        return torch.cat(maps)

    def fuse(self, model: ModelAdapter, x: Tensor, target: Tensor, layer: str) -> tuple[Tensor, Tensor]:
        """One chunk of images: (its maps, its number of kept sizes)."""
        size = tuple(x.shape[-2:])
        acts, grads, keep = [], [], []
        base_class = None
        for t, zeta in enumerate(cameras_sizes(size, self.step, self.max_size)):
            xt = x if t == 0 else F.interpolate(x, size=zeta, mode=self.resize, align_corners=False)
            a, g, logits = layer_activations_and_gradients(model, xt, target, layer)
            acts.append(a)
            grads.append(g)
            top1 = logits.argmax(1)
            base_class = top1 if t == 0 else base_class
            keep.append((top1 == base_class) | (top1 == target))
        if acts[0].dim() != 4:
            raise ConfigError(f"cameras: layer '{layer}' outputs shape {tuple(acts[0].shape)}; it needs (B,K,h,w)")
        keep = torch.stack(keep, 1)
        share = keep.to(x.dtype) / keep.sum(1, keepdim=True)
        saliency = x.new_zeros((x.shape[0], *size))
        for ch in chunks(acts[0].shape[1], self.channel_chunk):
            mean_a = sum(share[:, t, None, None, None] * upsample(a[:, ch], size) for t, a in enumerate(acts))
            mean_g = sum(share[:, t, None, None, None] * upsample(g[:, ch], size) for t, g in enumerate(grads))
            saliency += (mean_a * mean_g).sum(1)
        return torch.relu(saliency), keep.sum(1).float()

"""LeGrad: each block's own class score, differentiated with respect to that block's attention
probabilities; the positive gradients, averaged over heads, queries and blocks, are the map.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import ModelError
from ..models.adapter import ModelAdapter
from ..models.attention import attention_capture
from ..registry import param
from ..tensorops import minmax, target_scores, upsample
from .attention import AttentionExplainer, patch_grid
from .base import EXPLAINERS


def token_head(module: nn.Module) -> Callable[[Tensor], Tensor]:
    """(B, N, C) tokens of any block → (B, classes) logits: the mean token through the model's final
    norm and classifier (LeGrad's s^l; torchvision: `encoder.ln`, `heads`; timm: `norm`, `forward_head`
    on the mean token in every position, so token or average pooling and distillation heads apply)."""
    encoder = getattr(module, "encoder", None)
    if isinstance(getattr(encoder, "ln", None), nn.Module) and isinstance(getattr(module, "heads", None), nn.Module):
        return lambda t: module.heads(encoder.ln(t.mean(1)))
    if callable(getattr(module, "forward_head", None)) and isinstance(getattr(module, "norm", None), nn.Module):
        return lambda t: module.forward_head(module.norm(t.mean(1, keepdim=True)).expand_as(t))
    raise ModelError("legrad needs the model's final norm and classifier to score each block's tokens: "
                     "torchvision VisionTransformer (encoder.ln, heads) or timm ViT (norm, forward_head)")


@EXPLAINERS.register("legrad")
@dataclass
class LeGrad(AttentionExplainer):
    """LeGrad (Bousselham et al., "LeGrad: An Explainability Method for Vision Transformers via
    Feature Formation Sensitivity", 2024; torchcam's `LeGrad`): for each of the last `blocks` blocks l,
    s^l = the target logit of the block's mean token through the final norm and classifier;
    E^l = mean over heads and queries of ReLU(∂s^l/∂A^l), patch-token columns; the map is the mean
    of E^l over the blocks, upsampled bilinearly, min-max normalized per image (`normalize`, as the
    paper). One forward and one backward for all blocks (each block's input is made a graph leaf,
    so ∂s^l/∂A^l is that block's own score's gradient, exactly as L separate backwards)."""

    blocks: int = param(0, help="how many of the last blocks are averaged; 0: all", ge=0)
    normalize: bool = param(True, help="min-max normalize each map to [0, 1] (as the paper); false: raw mean")

    def explain(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        with torch.enable_grad(), attention_capture(model.module, leaves="every", tokens=True, what=self.name) as rec:
            head = token_head(model.module)
            model(x)
            k = len(rec.probs) if self.blocks == 0 else min(self.blocks, len(rec.probs))
            if len(rec.tokens) != len(rec.probs):
                raise ModelError("legrad needs one attention call per block")
            target = target.to(x.device)
            score = sum(target_scores(head(t), target).sum() for t in rec.tokens[-k:])
            grads = torch.autograd.grad(score, rec.probs[-k:])
        model.count_passes(backward_images=x.shape[0])
        rows = torch.stack([g.clamp_min(0).mean((1, 2)) for g in grads]).mean(0)  # (B, N)
        grid, prefix = patch_grid(model.module, x, rows.shape[1], self.name)
        maps = upsample(rows[:, prefix:].reshape(-1, *grid), tuple(x.shape[-2:]))
        return minmax(maps) if self.normalize else maps

"""Attention explainers of vision transformers that read the class token's row of the attention
matrices: raw attention, attention rollout, gradient-weighted attention rollout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from ..errors import ModelError
from ..models.adapter import ModelAdapter
from ..models.attention import attention_capture
from ..models.tokens import patch_embedding, prefix_tokens
from ..registry import param
from ..tensorops import target_scores, upsample
from .base import EXPLAINERS, Explainer


def patch_grid(module: nn.Module, x: Tensor, tokens: int, what: str) -> tuple[tuple[int, int], int]:
    """((rows, cols), prefix-token count) of the model's patch grid for input `x` and `tokens` tokens."""
    embed = patch_embedding(module)
    if embed is None:
        raise ModelError(f"{what} needs the model's patch embedding (a convolution with kernel = stride), "
                         "which this model does not have")
    grid = embed.grid(x.shape[-2], x.shape[-1])
    return grid, prefix_tokens(module, tokens, grid, embed.name)


def class_token_maps(module: nn.Module, x: Tensor, rows: Tensor, what: str) -> Tensor:
    """(B, N) rows of token relevances (the class token's, over all N tokens) → (B,H,W) maps: the
    patch tokens' entries on the model's grid, upsampled bilinearly to the input size."""
    grid, prefix = patch_grid(module, x, rows.shape[1], what)
    if prefix < 1:
        raise ModelError(f"{what} reads the class token's attention, but this model has no class token "
                         "(prefix tokens: 0); use legrad or attnlrp")
    return upsample(rows[:, prefix:].reshape(-1, *grid), tuple(x.shape[-2:]))


@dataclass
class AttentionExplainer(Explainer):
    """Base of the explainers that read attention probabilities (`models/attention.py` captures them)."""

    needs: ClassVar[frozenset[str]] = frozenset({"hooks", "attention"})


@EXPLAINERS.register("raw_attention")
@dataclass
class RawAttention(AttentionExplainer):
    """Raw attention: the last block's attention from the class token to each patch token, averaged
    over heads — the baseline of Abnar & Zuidema ("Quantifying Attention Flow in Transformers", ACL
    2020) and Chefer et al. (CVPR 2021). 1 forward."""

    def explain(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        with torch.no_grad(), attention_capture(model.module, what=self.name) as rec:
            model(x)
        return class_token_maps(model.module, x, rec.probs[-1].mean(1)[:, 0], self.name)


HeadFusion = Literal["mean", "max", "min"]


def fuse_heads(probs: Tensor, how: str) -> Tensor:
    """(B, heads, N, N) → (B, N, N): the heads' mean, max or min."""
    if how == "mean":
        return probs.mean(1)
    return probs.amax(1) if how == "max" else probs.amin(1)


def class_row(probs: Tensor) -> Tensor:
    """(B, N) one-hot rows e_0 (the class token), batch and size of (B, heads, N, N) `probs`."""
    row = torch.zeros(probs.shape[0], probs.shape[-1], dtype=probs.dtype, device=probs.device)
    row[:, 0] = 1.0
    return row


def discard_lowest(a: Tensor, ratio: float) -> Tensor:
    """Zero the `ratio` share of lowest entries of each image's (N, N) matrix, never the class
    token's attention to itself (entry 0, as jacobgil/vit-explain does)."""
    flat = a.flatten(1)
    k = int(flat.shape[1] * ratio)
    if k == 0:
        return a
    if k <= flat.shape[1] // 2:
        drop = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, flat.topk(k, dim=1, largest=False).indices, True)
    else:  # the complement of the (fewer) largest: the same partition, a smaller selection (discard 0.9)
        keep = flat.topk(flat.shape[1] - k, dim=1).indices
        drop = torch.ones_like(flat, dtype=torch.bool).scatter_(1, keep, False)
    drop[:, 0] = False
    return flat.masked_fill(drop, 0.0).view_as(a)


@EXPLAINERS.register("attention_rollout")
@dataclass
class AttentionRollout(AttentionExplainer):
    """Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020):
    per block the heads are fused (`head_fusion`), the `discard_ratio` lowest entries dropped
    (jacobgil/vit-explain), the residual added (Â = 0.5·A + 0.5·I, rows renormalized to sum 1);
    the blocks' Â are multiplied (Â_L ⋯ Â_1) and the class token's row over the patch tokens is the
    map. Class-independent (the target is not used). 1 forward; only the class row is carried
    (vector × matrix per block)."""

    head_fusion: HeadFusion = param("mean", help="how the heads' attention is fused per block: mean, max or min")
    discard_ratio: float = param(0.0, help="share of each block's lowest fused attention entries set to 0", ge=0, lt=1)
    residual: bool = param(True, help="add the identity for the residual connection (0.5·A + 0.5·I, rows renormalized)")

    def explain(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        with torch.no_grad(), attention_capture(model.module, what=self.name) as rec:
            model(x)
            row = class_row(rec.probs[0])
            for probs in reversed(rec.probs):  # e_0ᵀ Â_L ⋯ Â_1, left to right
                a = discard_lowest(fuse_heads(probs, self.head_fusion), self.discard_ratio)
                if self.residual:
                    a = 0.5 * a + 0.5 * torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
                    a = a / a.sum(-1, keepdim=True)
                row = torch.bmm(row.unsqueeze(1), a).squeeze(1)
        return class_token_maps(model.module, x, row, self.name)


@EXPLAINERS.register("attention_gradient_rollout")
@dataclass
class AttentionGradientRollout(AttentionExplainer):
    """Gradient-weighted attention rollout (Chefer, Gur & Wolf, "Generic Attention-model
    Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers", ICCV 2021, Eq. 5–6;
    hila-chefer/Transformer-MM-Explainability): per block Ā = E_h[(∇A ⊙ A)⁺], with ∇A the gradient
    of the target logit; R ← R + Ā·R from R = I over the blocks in order; the class token's row over
    the patch tokens is the map. 1 forward + 1 backward (to the first block's input)."""

    def explain(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        with torch.enable_grad(), attention_capture(model.module, leaves="first", what=self.name) as rec:
            logits = model(x)
            grads = torch.autograd.grad(target_scores(logits, target.to(logits.device)).sum(), rec.probs)
        row = class_row(rec.probs[0])
        for probs, grad in zip(reversed(rec.probs), reversed(grads)):  # e_0ᵀ (I + Ā_L) ⋯ (I + Ā_1)
            row = row + torch.bmm(row.unsqueeze(1), (grad * probs.detach()).clamp_min(0).mean(1)).squeeze(1)
        return class_token_maps(model.module, x, row, self.name)

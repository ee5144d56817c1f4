"""The model passes every gradient-based method builds on: a forward with a layer recorded, and a
backward of the target logits that stops at that layer or at the input (no parameter gradients).
Token layers (vision transformers) come as (B,C,h,w) maps with gradients to match (`capture`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..tensorops import target_scores
from .adapter import ModelAdapter


def layer_activations_and_gradients(model: ModelAdapter, x: Tensor, target: Tensor, layer: str):
    """One forward and a backward that stops at `layer`: (activations, gradients of the target
    logit w.r.t. them, logits). No parameter gradients are computed."""
    with torch.enable_grad(), model.capture(layer) as cap:
        logits = model(x)
        acts = cap.activation
        (grads,) = torch.autograd.grad(target_scores(logits, target).sum(), acts)
    return acts.detach(), grads.detach(), logits.detach()


def layer_activations(model: ModelAdapter, x: Tensor, layer: str) -> tuple[Tensor, Tensor]:
    """One forward without autograd: (activations of `layer`, logits)."""
    acts, logits, _ = layer_outputs(model, x, layer)
    return acts, logits


def layer_outputs(model: ModelAdapter, x: Tensor, layer: str) -> tuple[Tensor, Tensor, Tensor | None]:
    """One forward without autograd: (activations of `layer` (B,C,h,w), logits, the layer's prefix
    tokens (B,p,C) when it is a token layer with class/distillation/register tokens, else None) —
    what a method that replaces the layer's output (`edits.replaced_output`) needs."""
    with torch.no_grad(), model.capture(layer) as cap:
        logits = model(x)
        acts = cap.activation
    return acts, logits, cap.prefix.get(cap.layers[0])


def input_gradients(model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
    """∂y_c/∂x for each image of the batch: one forward and one backward to the input (no
    parameter gradients)."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)  # a new leaf over the same storage: x is untouched
        (grad,) = torch.autograd.grad(target_scores(model(xg), target).sum(), xg)
    return grad

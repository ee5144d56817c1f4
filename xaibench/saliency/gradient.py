"""Gradient-based explainers that attribute to input pixels.

Vanilla gradient saliency for now; the family grows in its own issue.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..models.adapter import ModelAdapter
from .base import EXPLAINERS, Explainer, Reduce, reduce_channels, target_scores


def input_gradients(model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
    """∂y_c/∂x for each image of the batch: one forward and one backward to the input."""
    with torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(target_scores(model(xg), target).sum(), xg)
    return grad


@EXPLAINERS.register("saliency")
@dataclass
class Saliency(Explainer):
    """Gradient saliency (Simonyan et al., ICLR-W 2014): |∂y_c/∂x|, max over colour channels."""

    reduce: Reduce = "abs_max"

    def explain(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        return reduce_channels(input_gradients(model, x, target), self.reduce)

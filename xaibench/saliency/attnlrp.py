"""AttnLRP: layer-wise relevance propagation through a vision transformer's attention, LayerNorm and
GELU by the rules of Achtibat et al. (ICML 2024), as input × modified gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..models.adapter import ModelAdapter
from ..models.attnlrp_rules import attnlrp_rules
from ..registry import param
from ..tensorops import target_scores
from .base import EXPLAINERS, REDUCE_HELP, Reduce
from .gradient import InputAttribution


@EXPLAINERS.register("attnlrp")
@dataclass
class AttnLRP(InputAttribution):
    """AttnLRP (Achtibat et al., "AttnLRP: Attention-Aware Layer-Wise Relevance Propagation for
    Transformers", ICML 2024): the target logit's relevance propagated to the input pixels — the
    softmax rule (Prop. 3.1), the uniform rule on both attention products (q·kᵀ and A·v, 0.5/0.5),
    the identity rule through LayerNorm's division (its standard deviation constant) and GELU, the
    ε-rule on linear layers (the patch embedding included); relevance absorbed by biases, the class
    token and the position embedding does not reach the pixels (docs/methods.md §AttnLRP).
    Computed as x ⊙ ∂y_c/∂x with modified backwards (`models/attnlrp_rules.py`). 1 forward + 1 backward."""

    needs: ClassVar[frozenset[str]] = frozenset({"hooks", "attention"})
    reduce: Reduce = param("sum", help=REDUCE_HELP)

    def attribute(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        with torch.enable_grad(), attnlrp_rules(model.module):
            xg = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(target_scores(model(xg), target.to(x.device)).sum(), xg)
        return x * grad

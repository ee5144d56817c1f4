"""Class activation maps whose channel weights come from one gradient pass to the layer.

Each variant is its weight formula on top of the shared CAM core in `base.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .base import EXPLAINERS, CAMExplainer


@EXPLAINERS.register("gradcam")
@dataclass
class GradCAM(CAMExplainer):
    """Grad-CAM (Selvaraju et al., ICCV 2017): w_k = mean over (i,j) of ∂y_c/∂A_k(i,j)."""

    def weights(self, acts: Tensor, grads: Tensor, logits: Tensor, target: Tensor) -> Tensor:
        return grads.mean(dim=(2, 3), keepdim=True)

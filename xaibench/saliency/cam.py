"""Class activation maps whose weights come from the classifier head or from one gradient pass
to the layer. Each variant is its weight formula on top of the shared CAM core in `base.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from ..errors import LayerError, ModelError
from ..models.adapter import ModelAdapter
from ..tensorops import assemble_cam, safe_divide
from .base import EXPLAINERS, CAMExplainer


@EXPLAINERS.register("gradcam")
@dataclass
class GradCAM(CAMExplainer):
    """Grad-CAM (Selvaraju et al., ICCV 2017): w_k = mean over (i,j) of ∂y_c/∂A_k(i,j)."""

    def weights(self, acts: Tensor, grads: Tensor, logits: Tensor, target: Tensor) -> Tensor:
        return grads.mean(dim=(2, 3), keepdim=True)


@EXPLAINERS.register("gradcampp")
@dataclass
class GradCAMPlusPlus(CAMExplainer):
    """Grad-CAM++ (Chattopadhay et al., WACV 2018, eq. 19): α_kij = g²/(2g² + Σ_ab A_kab·g³),
    w_k = Σ_ij α_kij·ReLU(g_kij), with g = ∂y_c/∂A. A 0/0 coefficient is 0 (no epsilon)."""

    def weights(self, acts: Tensor, grads: Tensor, logits: Tensor, target: Tensor) -> Tensor:
        g2 = grads.pow(2)
        alpha = safe_divide(g2, 2 * g2 + acts.sum(dim=(2, 3), keepdim=True) * g2 * grads)
        return (alpha * torch.relu(grads)).sum(dim=(2, 3), keepdim=True)


@EXPLAINERS.register("xgradcam")
@dataclass
class XGradCAM(CAMExplainer):
    """XGrad-CAM (Fu et al., BMVC 2020, eq. 13): w_k = Σ_ij (A_kij / Σ_ab A_kab)·∂y_c/∂A_kij
    (a channel whose activations sum to 0 gets weight 0)."""

    def weights(self, acts: Tensor, grads: Tensor, logits: Tensor, target: Tensor) -> Tensor:
        return safe_divide((acts * grads).sum(dim=(2, 3), keepdim=True), acts.sum(dim=(2, 3), keepdim=True))


@EXPLAINERS.register("layercam")
@dataclass
class LayerCAM(CAMExplainer):
    """LayerCAM (Jiang et al., IEEE TIP 2021, eq. 5): element-wise weights ReLU(∂y_c/∂A_kij)."""

    def weights(self, acts: Tensor, grads: Tensor, logits: Tensor, target: Tensor) -> Tensor:
        return torch.relu(grads)


@EXPLAINERS.register("hirescam")
@dataclass
class HiResCAM(CAMExplainer):
    """HiResCAM (Draelos & Carin, 2020, arXiv:2011.08891): element-wise weights ∂y_c/∂A_kij,
    i.e. ReLU(Σ_k ∂y_c/∂A_k ⊙ A_k) — Grad-CAM without the gradient averaging."""

    def weights(self, acts: Tensor, grads: Tensor, logits: Tensor, target: Tensor) -> Tensor:
        return grads


def head_call(model: ModelAdapter, x: Tensor, layer: str) -> tuple[Tensor, Tensor, nn.Linear, Tensor]:
    """One forward recording the layer's activations, the logits, the last `nn.Linear` run and
    its input: (acts, logits, linear, linear_input)."""
    linears = {n: m for n, m in model.layers().items() if isinstance(m, nn.Linear)}
    calls: list[tuple[nn.Linear, Tensor]] = []
    handles = [m.register_forward_hook(lambda mod, inp, out: calls.append((mod, inp[0]))) for m in linears.values()]
    try:
        with torch.no_grad(), model.capture(layer) as cap:
            logits = model(x)
            acts = cap.activation
    finally:
        for h in handles:
            h.remove()
    if not calls:
        raise ModelError(f"cam needs a head global-average-pool + linear; model '{model.name}' has no nn.Linear. "
                         "Use gradcam (its generalization) instead.")
    return acts, logits, calls[-1][0], calls[-1][1]


@EXPLAINERS.register("cam")
@dataclass
class CAM(CAMExplainer):
    """CAM (Zhou et al., CVPR 2016): M_c = Σ_k w_ck·A_k with w_c the row of the final linear
    layer for class c, on models whose head is global-average-pool + linear on the layer's
    output (an elementwise ReLU before the pooling, as in DenseNet, is allowed and applied to
    A). The head is verified numerically: its linear output must be the logits and its input
    the pooled activations; otherwise a LayerError. The paper's map keeps its sign (no ReLU)."""

    uses_gradients: ClassVar[bool] = False
    relu: ClassVar[bool] = False
    needs: ClassVar[frozenset[str]] = frozenset({"pooled_head"})

    def explain(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        layer = model.resolve_layer(self.layer)
        acts, logits, linear, feats = head_call(model, x, layer)
        why = None
        if acts.dim() != 4:
            why = f"layer '{layer}' outputs shape {tuple(acts.shape)}, not (B,K,h,w)"
        elif linear(feats).shape != logits.shape or not torch.allclose(linear(feats), logits, rtol=1e-4, atol=1e-5):
            why = "the last linear layer's output is not the model's logits (layers follow it)"
        elif feats.shape != acts.shape[:2]:
            why = f"the last linear layer takes {tuple(feats.shape[1:])} features, layer '{layer}' has {acts.shape[1]} channels"
        else:
            scale = feats.abs().amax().clamp_min(1e-6)
            for fmap in (acts, torch.relu(acts)):
                if torch.allclose(fmap.mean(dim=(2, 3)) / scale, feats / scale, rtol=1e-4, atol=1e-5):
                    weights = linear.weight[target.to(logits.device)].to(acts.dtype)[:, :, None, None]
                    return assemble_cam(weights, fmap, x.shape[-2:], relu=self.relu)
            why = f"the last linear layer's input is not the global average of layer '{layer}' (or of its ReLU)"
        raise LayerError(
            f"cam needs a model whose head is global-average-pool + linear on layer '{layer}': {why}. "
            "Choose the last conv layer before the pooling, or use gradcam (its generalization to any head)."
        )

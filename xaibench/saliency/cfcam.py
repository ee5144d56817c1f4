"""CF-CAM (docs/methods.md §CF-CAM): contrastive-LRP relevance at a layer says where each channel
matters; a Score-CAM-style perturbation against a blurred baseline says how much.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from ..errors import LayerError
from ..imageops import check_odd_kernel, gaussian_blur
from ..memory import ChunkSize
from ..models.adapter import ModelAdapter
from ..registry import param
from ..tensorops import chunks, class_scores, minmax, upsample
from .base import EXPLAINERS, LAYER_HELP, Explainer
from .lrp import (
    CANONIZER_HELP,
    COMPOSITE_HELP,
    EPSILON_HELP,
    CanonizerName,
    CompositeName,
    layer_relevance,
    make_composite,
)


@EXPLAINERS.register("cfcam")
@dataclass
class CFCAM(Explainer):
    """CF-CAM, coarse-to-fine CAM with contrastive LRP (Sun, Shi & Wang, "Study of Coarse-to-Fine
    Class Activation Mapping Algorithms Based on Contrastive Layer-wise Relevance Propagation",
    JEIT 2023, Algorithm 1; docs/methods.md §CF-CAM).

    1. xb = blur(x, blur_kernel, blur_sigma) (reflect padding).
    2–3. One forward of x and one LRP backward to `layer` (Zennit `composite`, default z⁺ for
       convolutions and ε for linear layers): activations A and R = ReLU(R_c − R_dual) (CLRP,
       Gu et al. 2018; the dual is all other classes weighted equally).
    4. For every channel k: M_k = minmax(up(R_k ⊙ A_k)) (Algorithm 1 writes upsample(R_k A_k);
       the min-max keeps the blend convex, see docs/methods.md §CF-CAM); x' = x ⊙ M_k + xb ⊙ (1 −
       M_k); α_k = f_c(x') − f_c(xb) with f = `score` (softmax probability or logit);
       L = Σ α_k M_k.
    5. Return L as Algorithm 1 does, signed (`relu: false`), or ReLU(L) (`relu: true`).

    Channels whose R_k ⊙ A_k is constant (all zero included) give M_k = 0 and α_k = 0, so they
    are skipped exactly. The (image, channel) pairs left go through the model in `chunk_size`
    pieces. Passes per image: 1 forward+backward (to the layer) + non-constant channels + 1
    forward (xb); `diagnostics["channels_scored"]` holds the non-constant channel count.
    """

    needs: ClassVar[frozenset[str]] = frozenset({"lrp_rules"})
    layer: str = param("auto", help=LAYER_HELP)
    blur_kernel: int = param(51, help="Gaussian kernel of the blurred baseline, px (odd)", ge=1)
    blur_sigma: float = param(50.0, help="Gaussian sigma of the blurred baseline, px", gt=0)
    score: Literal["softmax", "logit"] = param("softmax", help="class score of the perturbed inputs: softmax or logit")
    composite: CompositeName = param("epsilon_plus", help=COMPOSITE_HELP)
    canonizer: CanonizerName = param("auto", help=CANONIZER_HELP)
    epsilon: float = param(1e-6, help=EPSILON_HELP, ge=0)
    chunk_size: ChunkSize = param(64, help="masked inputs per model call; auto: sized from the memory budget", ge=1)
    relu: bool = param(False, help="ReLU on the final map; false: L as Algorithm 1 returns it (signed)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_odd_kernel(self.blur_kernel)

    def explain(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        layer = model.resolve_layer(self.layer)
        x = x.detach()
        target = target.to(x.device)
        b, _, h, w = x.shape
        xb = gaussian_blur(x, self.blur_kernel, self.blur_sigma)
        composite = make_composite(self.composite, model, x, self.epsilon, 0.25, self.canonizer)
        acts, rel = layer_relevance(model, x, target, layer, composite, contrastive=True)
        if acts.shape[-1] * acts.shape[-2] == 1:
            raise LayerError(f"layer '{layer}' outputs 1×1 maps at this input size, so every CF-CAM mask is "
                             "constant; choose an earlier layer or a larger input")
        weighted = rel * acts  # R_k ⊙ A_k, (B,K,h',w')
        spatial = weighted.flatten(2)
        live = spatial.amax(2) > spatial.amin(2)  # non-constant maps only
        img_of, chan_of = live.nonzero(as_tuple=True)
        self.diagnostics["channels_scored"] = live.sum(1)
        cam = torch.zeros(b, h, w, device=x.device, dtype=x.dtype)
        with torch.inference_mode(), model.fused_inference():
            base_score = class_scores(model(xb), target, model.score_kind(self.score))
            for piece in chunks(len(img_of), self.chunk_size):
                img, chan = img_of[piece], chan_of[piece]
                masks = minmax(upsample(weighted[img, chan], (h, w)))  # (k,H,W)
                m = masks.unsqueeze(1).to(x.dtype)
                xs = x[img] * m + xb[img] * (1 - m)
                alpha = class_scores(model(xs), target[img], model.score_kind(self.score)) - base_score[img]
                cam.index_add_(0, img, alpha.view(-1, 1, 1) * masks)
        return torch.relu(cam) if self.relu else cam

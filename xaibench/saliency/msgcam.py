"""MSG-CAM: multi-scale gradient CAM with grouped score masks (docs/methods.md §MSG-CAM).

Gradient passes at growing input sizes build per-channel masks; groups of them are scored by
perturbation against a blurred baseline, all perturbed inputs in one chunked flat batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from torch import Tensor

from ..errors import ConfigError
from ..imageops import check_odd_kernel, gaussian_blur
from ..memory import ChunkSize, auto_chunk
from ..models.adapter import ModelAdapter
from ..registry import param
from ..tensorops import chunks, class_scores, minmax, target_scores, upsample
from .base import EXPLAINERS, LAYER_HELP, Explainer, require_resizable


def upsample_adjoint_ones(shape: tuple[int, int], size: tuple[int, int], device: torch.device) -> Tensor:
    """c (h,w) with Σ_ij up(G)(i,j) = Σ_ab G(a,b)·c(a,b) for bilinear `up` from `shape` to `size`:
    the exact mean of an upsampled map without materializing it."""
    g = torch.zeros(1, 1, *shape, device=device, requires_grad=True)
    with torch.enable_grad():
        (c,) = torch.autograd.grad(upsample(g, size).sum(), g)
    return c[0, 0]


def scale_sizes(size: tuple[int, int], scales: int, max_size: int) -> list[tuple[int, int]]:
    """ζ_t = ζ_0 + Δ·(t−1) per side, Δ = floor(max_size / N) (thesis eq. 3-2)."""
    step = max_size // scales
    return [(size[0] + step * t, size[1] + step * t) for t in range(scales)]


def scale_pass(model: ModelAdapter, xt: Tensor, cls: Tensor | None, layer: str):
    """One forward of `xt` and one backward of F_c to `layer`: (A_t, G_t, logits, c), with c the
    given classes or, for `cls=None`, the top-1 of this very forward (Algorithm 1 line 1)."""
    with torch.enable_grad(), model.capture(layer) as cap:
        logits = model(xt)
        c = logits.argmax(1) if cls is None else cls
        (grads,) = torch.autograd.grad(target_scores(logits, c).sum(), cap.activation)
    return cap.activation.detach(), grads.detach(), logits.detach(), c


def group_sums(values: Tensor, group_size: int) -> Tensor:
    """(B,K,...) → (B,ceil(K/g),...): sums over consecutive channel groups (last one shorter)."""
    b, k = values.shape[:2]
    groups = math.ceil(k / group_size)
    pad = values.new_zeros((b, groups * group_size - k, *values.shape[2:]))
    return torch.cat([values, pad], 1).view(b, groups, group_size, *values.shape[2:]).sum(2)


@EXPLAINERS.register("msgcam")
@dataclass
class MSGCAM(Explainer):
    """MSG-CAM (thesis ch. 3, Algorithm 1; docs/methods.md §MSG-CAM).

    0. c = top-1 of F(x0) (line 1; `target_class: top1`), or the run's target (`run`).
    1. x_b = blur(x0, blur_kernel, blur_sigma). 2. For t = 1..scales, x_t = up(x0, ζ_t); the
    scale is valid when argmax F(x_t) = c; valid scales contribute up(A_t), up(G_t) (G = ∂F_c/∂A).
    No valid scale (only possible with `target_class: run`): scale 1 alone (diagnostics
    `fallback` = 1; `valid_scales` counts; `class` holds c).
    3. w_k = mean_ij Ḡ_k; M_k = w_k·Ā_k. 4. Groups of `group_size` consecutive channels:
    M_r = ReLU(Σ_{k∈r} M_k); M'_r = minmax(M_r) (after an optional Gaussian `denoise_sigma`
    smoothing, 0 = off: line 22 names a denoising step without defining it),
    x_r = x0 ⊙ M'_r + x_b ⊙ (1 − M'_r), α_r = F_c(x_r) − F_c(x_b) (`score` logit or softmax).
    5. L = ReLU(Σ_r α_r M_r) with the raw group masks M_r (line 25; `group_masks: raw`), or with
    the normalized M'_r (`group_masks: normalized`).

    Exact reorganizations: the grouped masks are Σ_t up(Σ_{k∈r} w_k A_t,k)/t_max (bilinear `up`
    is linear), so no K×H0×W0 tensor is built, and mean_ij up(G_t) comes from the adjoint of
    `up`. A constant group mask is all zeros after minmax, so x_r = x_b and α_r = 0: skipped.
    Gradient passes run `scale_batch` images at a time (`auto`: as many as the memory budget
    allows at each scale's size), perturbed forwards `chunk_size` at a time.
    """

    needs: ClassVar[frozenset[str]] = frozenset({"resizable"})

    layer: str = param("auto", help=LAYER_HELP)
    scales: int = param(5, help="number of input sizes N (the first is the input's own)", ge=1)
    max_size: int = param(500, help="px the sizes grow by: scale t adds t·(max_size // scales) px per side", ge=1)
    group_size: int = param(16, help="consecutive channels summed into one scored mask", ge=1)
    blur_kernel: int = param(51, help="Gaussian kernel of the blurred baseline, px (odd)", ge=1)
    blur_sigma: float = param(50.0, help="Gaussian sigma of the blurred baseline, px", gt=0)
    score: Literal["logit", "softmax"] = param("logit", help="class score of the perturbed inputs: logit or softmax")
    denoise_sigma: float = param(0.0, help="Gaussian smoothing of the scored group masks, sigma in px; 0: off "
                                           "(the thesis names a denoising step without defining it)", ge=0)
    group_masks: Literal["raw", "normalized"] = param("raw", help="masks summed into the map: raw ReLU group sums "
                                                                  "(Algorithm 1 line 25) or their min-max normalization")
    target_class: Literal["top1", "run"] = param("top1", help="class c: top1 of the model on the image (Algorithm 1 "
                                                              "line 1) or run (the run's target, label or prediction)")
    chunk_size: ChunkSize = param(64, help="perturbed inputs per model call; auto: sized from the memory budget", ge=1)
    scale_batch: ChunkSize = param(8, help="images per gradient pass; auto: sized per scale from the memory budget",
                                   ge=1)
    budget_gb: float | None = field(default=None, init=False, repr=False)  # set by memory.build_sized

    def __post_init__(self) -> None:
        super().__post_init__()
        check_odd_kernel(self.blur_kernel)

    def scale_passes(self, model: ModelAdapter, x: Tensor, target: Tensor, layer: str):
        """Per scale: activations (B,K,h_t,w_t), exact channel means of up(G_t) (B,K), validity (B,);
        and the class c (B,): `target`, or the top-1 of the first scale (the input itself)."""
        size = tuple(x.shape[-2:])
        acts, gmeans, valid = [], [], []
        cls = target if self.target_class == "run" else None
        for zeta in scale_sizes(size, self.scales, self.max_size):
            xt = upsample(x, zeta)
            per = (auto_chunk(model, tuple(xt.shape[1:]), backward=True, budget_gb=self.budget_gb)
                   if self.scale_batch == "auto" else self.scale_batch)
            parts = [scale_pass(model, xt[sl], None if cls is None else cls[sl], layer)
                     for sl in chunks(x.shape[0], per)]
            a = torch.cat([p[0] for p in parts])
            g = torch.cat([p[1] for p in parts])
            logits = torch.cat([p[2] for p in parts])
            cls = torch.cat([p[3] for p in parts])  # scale 1 is ζ_0: its top-1 is that of F(x0)
            if a.dim() != 4:
                raise ConfigError(f"msgcam: layer '{layer}' outputs shape {tuple(a.shape)}; it needs (B,K,h,w)")
            c = upsample_adjoint_ones(tuple(a.shape[-2:]), size, x.device)
            acts.append(a)
            gmeans.append((g * c).sum(dim=(2, 3)) / (size[0] * size[1]))
            valid.append(logits.argmax(1) == cls)
        return acts, gmeans, torch.stack(valid, 1), cls

    def explain(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        layer = model.resolve_layer(self.layer)
        require_resizable(model, "msgcam")
        target = target.to(x.device)
        size = tuple(x.shape[-2:])
        acts, gmeans, valid, target = self.scale_passes(model, x, target, layer)
        fallback = ~valid.any(1)
        valid[:, 0] |= fallback
        share = valid.to(x.dtype) / valid.sum(1, keepdim=True)  # (B,N): 1/t_max on valid scales
        weights = sum(share[:, t, None] * gmeans[t] for t in range(self.scales))  # (B,K)
        masks = sum(
            share[:, t, None, None, None] * upsample(group_sums(weights[:, :, None, None] * acts[t], self.group_size), size)
            for t in range(self.scales)
        )
        raw = torch.relu(masks)  # M_r (B,R,H,W)
        masks = raw
        if self.denoise_sigma > 0:
            kernel = 2 * math.ceil(3 * self.denoise_sigma) + 1
            masks = gaussian_blur(masks, kernel, self.denoise_sigma)
        masks = minmax(masks)  # M'_r
        alpha = self.group_scores(model, x, target, masks)
        self.diagnostics["fallback"] = fallback.float()
        self.diagnostics["valid_scales"] = valid.sum(1).float()
        self.diagnostics["class"] = target.float()
        summed = raw if self.group_masks == "raw" else masks
        return torch.relu((alpha[:, :, None, None] * summed).sum(1))

    def group_scores(self, model: ModelAdapter, x: Tensor, target: Tensor, masks: Tensor) -> Tensor:
        """α_r = F_c(x_r) − F_c(x_b) for every (image, group), constant masks skipped (α = 0)."""
        xb = gaussian_blur(x, self.blur_kernel, self.blur_sigma)
        alpha = torch.zeros(masks.shape[:2], device=x.device, dtype=x.dtype)
        pairs = (masks.flatten(2).amax(2) > 0).nonzero()
        with torch.no_grad(), model.fused_inference():
            base = class_scores(model(xb), target, model.score_kind(self.score))
            for sl in chunks(len(pairs), self.chunk_size):
                b, r = pairs[sl, 0], pairs[sl, 1]
                m = masks[b, r][:, None]
                xr = x[b] * m + xb[b] * (1 - m)
                alpha[b, r] = class_scores(model(xr), target[b], model.score_kind(self.score)) - base[b]
        return alpha

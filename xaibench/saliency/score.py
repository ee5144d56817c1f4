"""CAMs whose channel weights come from perturbed forwards (Score-CAM, SS-CAM, Ablation-CAM) or
from noisy gradient passes (Smooth Grad-CAM++): the inner work is one flat batch, in chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..memory import ChunkSize
from ..models.adapter import ModelAdapter
from ..models.edits import replaced_output
from ..models.gradients import layer_outputs
from ..registry import param
from ..tensorops import (
    assemble_cam,
    chunks,
    minmax_,
    safe_divide,
    standard_normal,
    step_chunks,
    target_scores,
    upsample,
)
from .base import EXPLAINERS, CAMExplainer, check_feature_map


class ScaledNoise:
    """Seeded Gaussian noise N(0, std²) of the smoothed CAMs: `draws` blocks of `shape`, each drawn
    on its own (`tensorops.standard_normal`) and scaled by the explainer's `std` (tests replace
    this method to feed a reference implementation the same noise)."""

    std: float

    def noise(self, draws: int, shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> Tensor:
        return standard_normal(draws, shape, generator, device).mul_(self.std)


def channel_masks(acts: Tensor, pairs: Tensor, size: tuple[int, int]) -> Tensor:
    """s(Up(A_k)) for (image, channel) `pairs` (n,2): upsampled to `size`, then min-max
    normalized to [0,1] per map (Wang et al. 2020, Score-CAM Alg. 1). In place on the upsampled
    maps: a constant map gives (m − lo) = 0 exactly, so 0 / tiny = 0 needs no select."""
    return minmax_(upsample(acts[pairs[:, 0], pairs[:, 1]], size))


def masked_inputs(x: Tensor, images: Tensor, masks: Tensor, buffer: Tensor) -> Tensor:
    """x[images] ⊙ masks (masks (n,H,W) broadcast over colour), gathered into the first n rows of
    `buffer` and multiplied in place (a buffer reused across chunks spares the allocator a
    fresh, page-faulting block per chunk)."""
    out = buffer[: len(images)]
    return torch.index_select(x, 0, images, out=out).mul_(masks.unsqueeze(1))


def constant_channels(acts: Tensor) -> Tensor:
    """(B,K) bool: channels whose activation map is constant (then so is its upsampling)."""
    return acts.amax(dim=(2, 3)) == acts.amin(dim=(2, 3))


@EXPLAINERS.register("scorecam")
@dataclass
class ScoreCAM(CAMExplainer):
    """Score-CAM (Wang et al., CVPR-W 2020, Alg. 1): w = softmax_k(f_c(X ⊙ s(Up(A_k))) − f_c(X_b)),
    map = ReLU(Σ_k w_k A_k). The B·K masked inputs run as one flat batch in `chunk_size` pieces.
    A constant channel has the all-zero mask, whose input X ⊙ 0 is the same for every such
    channel: its logit comes from one forward of a zero image instead of one per channel (exact)."""

    chunk_size: ChunkSize = param(64, help="masked inputs per model call; auto: sized from the memory budget", ge=1)
    uses_gradients: ClassVar[bool] = False

    def channel_scores(self, model: ModelAdapter, x: Tensor, target: Tensor, acts: Tensor) -> Tensor:
        """(B,K) logits f_c(X ⊙ s(Up(A_k)))."""
        b, k = acts.shape[:2]
        const = constant_channels(acts)
        with torch.no_grad(), model.fused_inference():
            zero_logits = model(torch.zeros_like(x[:1]))[0]
            scores = zero_logits[target.to(x.device)].view(b, 1).expand(b, k).clone()
            pairs = (~const).nonzero()
            buffer = x.new_empty((min(len(pairs), self.chunk_size), *x.shape[1:]))
            for sl in chunks(len(pairs), self.chunk_size):
                p = pairs[sl]
                logits = model(masked_inputs(x, p[:, 0], channel_masks(acts, p, x.shape[-2:]), buffer))
                scores[p[:, 0], p[:, 1]] = target_scores(logits, target[p[:, 0]])
        self.diagnostics["skipped_channels"] = const.sum(1).float()
        return scores

    def model_weights(self, model, x, target, acts, grads, logits) -> Tensor:
        return torch.softmax(self.channel_scores(model, x, target, acts), dim=1)[:, :, None, None]


@EXPLAINERS.register("sscam")
@dataclass
class SSCAM(ScaledNoise, ScoreCAM):
    """SS-CAM (Wang et al., 2020, arXiv:2006.14255, SS-CAM(1)): Score-CAM whose channel score is
    the mean over `num_samples` noisy masks s(Up(A_k)) + N(0, std²) (noise per input pixel).
    Per sample, the B·K noisy inputs run in `chunk_size` pieces. Noise comes from a generator
    seeded with `seed`, one (K,H,W) draw per sample shared by the batch's images, so an image's
    map does not depend on the batch it is in. No channel is skipped (noise makes every mask vary)."""

    num_samples: int = param(35, help="noisy copies of every channel mask (scores averaged)", ge=1)
    std: float = param(2.0, help="std of the Gaussian noise added to the [0,1] masks", ge=0)
    seed: int = param(0, help="seed of the noise generator")

    def channel_scores(self, model: ModelAdapter, x: Tensor, target: Tensor, acts: Tensor) -> Tensor:
        b, k = acts.shape[:2]
        h, w = x.shape[-2:]
        gen = torch.Generator(device=x.device).manual_seed(self.seed)
        pairs = torch.stack(torch.meshgrid(torch.arange(b, device=x.device), torch.arange(k, device=x.device),
                                           indexing="ij"), -1).view(-1, 2)  # (image, channel), image-major
        total = torch.zeros(b, k, device=x.device, dtype=acts.dtype)
        with torch.no_grad(), model.fused_inference():
            buffer = x.new_empty((min(len(pairs), self.chunk_size), *x.shape[1:]))
            for _ in range(self.num_samples):
                noise = self.noise(1, (k, h, w), gen, x.device)[0]  # sample s, channel k: shared by the images
                for sl in chunks(len(pairs), self.chunk_size):
                    p = pairs[sl]
                    masks = channel_masks(acts, p, (h, w)).add_(noise[p[:, 1]])
                    logits = model(masked_inputs(x, p[:, 0], masks, buffer))
                    total[p[:, 0], p[:, 1]] += target_scores(logits, target[p[:, 0]])
        return total / self.num_samples


@EXPLAINERS.register("ablationcam")
@dataclass
class AblationCAM(CAMExplainer):
    """Ablation-CAM (Ramaswamy & Desai, WACV 2020, eq. 4): w_k = (y_c − y_c^k) / y_c with y_c^k
    the logit when channel k of the layer is set to zero; map = ReLU(Σ_k w_k A_k).

    The B·K ablated activations run in `chunk_size` pieces through the part of the model after
    the layer only: the layer's output is replaced by a hook while the part before it sees a
    single image (the real logits are checked to come back from the recorded activations, else
    every ablation runs the whole model). An all-zero channel is unchanged by its ablation, so
    its weight is exactly 0 and it is skipped. A zero logit y_c gives weights 0. On a token layer
    the ablated (B,C,h,w) maps go back into tokens behind each image's own prefix tokens."""

    chunk_size: ChunkSize = param(64, help="ablated activations per model call; auto: sized from the memory budget",
                                  ge=1)
    uses_gradients: ClassVar[bool] = False

    def explain(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        layer = model.resolve_layer(self.layer)
        acts, logits, prefix = layer_outputs(model, x, layer)
        check_feature_map(acts, layer, "a CAM")
        weights = self.model_weights(model, x, target, acts, None, logits, prefix)
        return assemble_cam(weights, acts, x.shape[-2:], relu=self.relu)

    def model_weights(self, model, x, target, acts, grads, logits, prefix: Tensor | None = None) -> Tensor:
        """(B,K,1,1) weights; `prefix`: the layer's prefix tokens (B,p,C) when it is a token layer."""
        b, k = acts.shape[:2]
        layer = model.resolve_layer(self.layer)
        y = target_scores(logits, target)
        ablated = y.view(b, 1).expand(b, k).clone()
        pairs = (acts != 0).flatten(2).any(2).nonzero()
        with torch.no_grad():
            with replaced_output(model, layer, acts, prefix):
                tail_only = torch.allclose(model(x[:1]), logits, rtol=1e-4, atol=1e-5 * float(logits.abs().max()))
            for sl in chunks(len(pairs), self.chunk_size):
                p = pairs[sl]
                chunk = acts[p[:, 0]].clone()
                chunk[torch.arange(len(p), device=x.device), p[:, 1]] = 0
                probe = x[:1] if tail_only else x[p[:, 0]]
                with replaced_output(model, layer, chunk, None if prefix is None else prefix[p[:, 0]]):
                    ablated[p[:, 0], p[:, 1]] = target_scores(model(probe), target[p[:, 0]])
        self.diagnostics["tail_only"] = torch.full((b,), float(tail_only), device=x.device)
        return safe_divide(y.view(b, 1) - ablated, y.view(b, 1).expand(b, k))[:, :, None, None]


@EXPLAINERS.register("smoothgradcampp")
@dataclass
class SmoothGradCAMPlusPlus(ScaledNoise, CAMExplainer):
    """Smooth Grad-CAM++ (Omeiza et al., 2019, arXiv:1908.01224): Grad-CAM++ with the gradient
    powers averaged over `num_samples` noisy copies x + N(0, std²) (SmoothGrad):
    D_n = mean_s (∂y_c/∂A(x_s))^n, α = D_2 / (2 D_2 + Σ_ab A_ab D_3), w_k = Σ_ij α·ReLU(D_1),
    with A the clean image's activations. The B·num_samples noisy passes (forward + backward
    stopped at the layer) run in pieces of at most `chunk_size`, whole samples per call; noise
    from a generator seeded with `seed`, one draw per sample shared by the batch's images (an
    image's map does not depend on its batch)."""

    num_samples: int = param(4, help="noisy copies of the input (gradient powers averaged)", ge=1)
    std: float = param(0.3, help="std of the Gaussian noise added to the input, model-input units", ge=0)
    chunk_size: ChunkSize = param(16, help="noisy inputs per forward+backward; auto: sized from the memory budget",
                                  ge=1)
    seed: int = param(0, help="seed of the noise generator")
    uses_gradients: ClassVar[bool] = False

    def model_weights(self, model, x, target, acts, grads, logits) -> Tensor:
        layer = model.resolve_layer(self.layer)
        b = x.shape[0]
        gen = torch.Generator(device=x.device).manual_seed(self.seed)
        moments = torch.zeros((3, *acts.shape), device=x.device, dtype=acts.dtype)
        for samples, rows in step_chunks(self.num_samples, b, self.chunk_size):
            k = samples.stop - samples.start
            if rows.start == 0:  # one draw per sample shared by the images, sample by sample (any chunking draws alike)
                z = self.noise(k, (1, *x.shape[1:]), gen, x.device)
            noisy = (x[rows] + z).flatten(0, 1)  # (sample, image) order
            with torch.enable_grad(), model.capture(layer) as cap:
                score = target_scores(model(noisy), target[rows].repeat(k)).sum()
                (g,) = torch.autograd.grad(score, cap.activation)
            g = g.view(k, rows.stop - rows.start, *g.shape[1:])
            for n in range(3):
                moments[n, rows] += g.pow(n + 1).sum(0)
        d1, d2, d3 = moments / self.num_samples
        alpha = safe_divide(d2, 2 * d2 + acts.sum(dim=(2, 3), keepdim=True) * d3)
        return (alpha * torch.relu(d1)).sum(dim=(2, 3), keepdim=True)

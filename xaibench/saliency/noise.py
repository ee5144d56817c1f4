"""SmoothGrad and VarGrad: the mean and the variance of any per-pixel gradient method over
noisy copies of the image; noise from a seeded generator, samples batched in `chunk_size` pieces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from ..errors import ConfigError
from ..memory import ChunkSize
from ..models.adapter import ModelAdapter
from ..registry import param
from ..tensorops import standard_normal, step_chunks
from .base import EXPLAINERS, reduce_channels
from .gradient import InputAttribution, gradient_method

ReduceOrAuto = Literal["auto", "sum", "abs_sum", "abs_max", "l2"]


@dataclass
class NoiseTunnel(InputAttribution):
    """Shared core of SmoothGrad/VarGrad: `n_samples` noisy copies x + ε, ε ~ N(0, σ²) with
    σ = `noise_level` × (max − min of the image) (Smilkov et al. 2017, §3), of every image go
    through `method` (a registered per-pixel method, with `method_params`) in pieces of at
    most `chunk_size` (sample, image) pairs, whole samples of the batch per call; running first
    and second moments are kept per image.

    Noise is drawn from a torch.Generator seeded with `seed` on the input's device: sample s is
    x + σ_x·z_s with the same standard-normal z_s for every image of the batch. Each image still
    sees `n_samples` independent N(0, σ²) draws, as the method asks; sharing them makes an image's
    map independent of the batch it is in, and costs one draw per sample instead of one per
    sample and image (drawing Gaussians is single-threaded on CPU and rivals the model's passes).
    A test may inject standard-normal noise of shape (n_samples, B, C, H, W) as `standard_noise`."""

    reduce: ReduceOrAuto = param("auto", help="colour reduction: auto (the method's own; vargrad: sum), sum, abs_sum, "
                                               "abs_max or l2")
    method: str = param("saliency", help="the per-pixel gradient method on the noisy copies (saliency, inputxgrad, …)")
    method_params: dict[str, Any] = param(default_factory=dict, help="parameters of that method")
    n_samples: int = param(25, help="noisy copies of every image", ge=1)
    noise_level: float = param(0.15, help="noise std as a fraction of the image's value range (max − min)", ge=0)
    seed: int = param(0, help="seed of the noise generator")
    chunk_size: ChunkSize = param(64, help="(sample, image) pairs per call of the method; auto: sized from the memory "
                                           "budget", ge=1)
    standard_noise: Tensor | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        gradient_method(self.method, self.method_params, where="method")  # the method's name and parameters

    def moments(self, model: ModelAdapter, x: Tensor, target: Tensor, second: bool = True) -> tuple[Tensor, Tensor | None]:
        """Per-image mean of the attributions over the noisy copies and, when `second`, the mean
        of their squares."""
        inner = gradient_method(self.method, self.method_params, where=f"{self.name}.method")
        x = x.detach()
        target = target.to(x.device)
        b = x.shape[0]
        sigma = self.noise_level * (x.flatten(1).amax(1) - x.flatten(1).amin(1))
        gen = torch.Generator(device=x.device).manual_seed(self.seed)
        injected = self.standard_noise
        if injected is not None and tuple(injected.shape) != (self.n_samples,) + tuple(x.shape):
            raise ConfigError(f"standard_noise must have shape {(self.n_samples,) + tuple(x.shape)}")
        mean = torch.zeros_like(x)
        sq = torch.zeros_like(x) if second else None
        shape = (-1,) + (1,) * (x.dim() - 1)
        for samples, rows in step_chunks(self.n_samples, b, self.chunk_size):
            k, n = samples.stop - samples.start, rows.stop - rows.start
            if injected is None and rows.start == 0:  # one draw per sample shared by the images
                drawn = standard_normal(k, (1, *x.shape[1:]), gen, x.device, x.dtype)
            z = drawn if injected is None else injected[samples, rows].to(x)
            noisy = torch.addcmul(x[rows], sigma[rows].view(shape), z).flatten(0, 1)  # (sample, image) order
            attr = inner.attribute(model, noisy, target[rows].repeat(k)).detach().view(k, n, *x.shape[1:])
            mean[rows] += attr.sum(0)
            if sq is not None:
                sq[rows] += attr.mul_(attr).sum(0)
        return mean / self.n_samples, None if sq is None else sq / self.n_samples

    def explain(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        reduce = self.reduce
        if reduce == "auto":
            reduce = "sum" if self.name == "vargrad" else gradient_method(self.method, self.method_params).reduce
        return reduce_channels(self.attribute(model, x, target), reduce)


@EXPLAINERS.register("smoothgrad")
@dataclass
class SmoothGrad(NoiseTunnel):
    """SmoothGrad (Smilkov et al., 2017): the mean of `method`'s attribution over noisy copies
    of the image. `reduce: auto` uses the wrapped method's reduction (abs_max for saliency)."""

    def attribute(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        return self.moments(model, x, target, second=False)[0]


@EXPLAINERS.register("vargrad")
@dataclass
class VarGrad(NoiseTunnel):
    """VarGrad (Adebayo et al., "Local explanation methods for deep neural networks lack
    sensitivity to parameter randomization", 2018): the variance of `method`'s attribution over
    noisy copies, E[a²] − E[a]² per input element. `reduce: auto` sums over channels."""

    def attribute(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        mean, sq = self.moments(model, x, target)
        return (sq - mean * mean).clamp_min(0)

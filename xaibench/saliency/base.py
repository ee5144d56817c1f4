"""The explainer contract, the explainer registry, and the shared CAM core: the core owns the
hooks, the gradient to the layer, the weighted sum and the upsampling; a CAM variant is only
its weight formula (the pytorch-grad-cam `BaseCAM.get_cam_weights` shape, kept on device).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ModelError
from ..models.adapter import ModelAdapter
from ..registry import Registry

Reduce = Literal["sum", "abs_sum", "abs_max", "l2"]


class Explainer:
    """Maps a model-input batch `x` (B,C,H,W) and targets (B,) to float32 maps (B,H,W).

    Subclasses are dataclasses whose fields are their typed parameters. Per-image diagnostics
    (e.g. an integration error, a fallback taken) go to `self.diagnostics` as (B,) tensors.
    """

    registry_name: ClassVar[str] = "explainer"

    def __post_init__(self) -> None:
        self.diagnostics: dict[str, Tensor] = {}

    @property
    def name(self) -> str:
        return self.registry_name

    def __call__(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        self.diagnostics = {}
        maps = self.explain(model, x, target)
        if maps.shape != (x.shape[0], x.shape[-2], x.shape[-1]):
            raise ModelError(f"{self.name} returned maps of shape {tuple(maps.shape)} for input {tuple(x.shape)}")
        return maps.float()

    def explain(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError


EXPLAINERS: Registry[Explainer] = Registry("explainer")


def target_scores(logits: Tensor, target: Tensor) -> Tensor:
    """(B,) logit of each image's target class."""
    return logits.gather(1, target.view(-1, 1).to(logits.device)).squeeze(1)


def reduce_channels(attr: Tensor, reduce: str) -> Tensor:
    """(B,C,H,W) per-channel attribution → (B,H,W) map (DESIGN.md "Contracts")."""
    if reduce == "sum":
        return attr.sum(1)
    if reduce == "abs_sum":
        return attr.abs().sum(1)
    if reduce == "abs_max":
        return attr.abs().amax(1)
    if reduce == "l2":
        return attr.pow(2).sum(1).sqrt()
    raise ValueError(f"unknown reduce '{reduce}'")


def upsample(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize (align_corners=False) of (B,h,w) or (B,K,h,w) maps to `size`."""
    squeeze = maps.dim() == 3
    m = maps.unsqueeze(1) if squeeze else maps
    if tuple(m.shape[-2:]) != tuple(size):
        m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
    return m.squeeze(1) if squeeze else m


def minmax(maps: Tensor, dims: tuple[int, ...] = (-2, -1)) -> Tensor:
    """Min-max normalize over `dims` to [0,1]; a constant map becomes all zeros."""
    lo = maps.amin(dim=dims, keepdim=True)
    hi = maps.amax(dim=dims, keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (maps - lo) / span.clamp_min(torch.finfo(maps.dtype).tiny), torch.zeros_like(maps))


def chunks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most `size` over range(n)."""
    size = max(1, int(size))
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def step_chunks(steps: int, batch: int, size: int) -> Iterator[tuple[slice, slice]]:
    """(steps, rows) pieces of the (step, image) grid of a batch — IG steps, noise samples, RISE
    masks — of at most `size` pairs: whole steps of the batch per piece while the batch fits,
    else one step over `size` images at a time. Step-major: a step's rows start at 0, where
    whatever the steps share (a noise draw, a mask) is made once."""
    for block in chunks(steps, max(1, int(size) // max(1, batch))):
        for rows in chunks(batch, size):
            yield block, rows


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
    with torch.no_grad(), model.capture(layer) as cap:
        logits = model(x)
        acts = cap.activation
    return acts, logits


def assemble_cam(weights: Tensor, acts: Tensor, size: tuple[int, int], relu: bool = True) -> Tensor:
    """Σ_k w_k ⊙ A_k over channels (weights (B,K,1,1) or element-wise (B,K,h,w)), an optional
    ReLU, then bilinear upsampling to `size`: the map assembly shared by every CAM."""
    cam = (weights * acts).sum(1)
    return upsample(torch.relu(cam) if relu else cam, size)


@dataclass
class CAMExplainer(Explainer):
    """Shared CAM core: map = ReLU(Σ_k w_k ⊙ A_k), upsampled bilinearly to the input size.

    A variant overrides `weights(acts, grads, logits, target)` returning (B,K,1,1) channel
    weights or (B,K,h,w) element weights. Variants whose weights need the model again
    (perturbation scores) override `model_weights` and set `uses_gradients = False`;
    `relu = False` for variants whose paper keeps the sign (CAM).
    """

    layer: str = "auto"
    uses_gradients: ClassVar[bool] = True
    relu: ClassVar[bool] = True

    def weights(self, acts: Tensor, grads: Tensor, logits: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def model_weights(
        self, model: ModelAdapter, x: Tensor, target: Tensor, acts: Tensor, grads: Tensor | None, logits: Tensor
    ) -> Tensor:
        """The weights, for variants that need the model and input again; default `weights`."""
        return self.weights(acts, grads, logits, target)

    def explain(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        layer = model.resolve_layer(self.layer)
        if self.uses_gradients:
            acts, grads, logits = layer_activations_and_gradients(model, x, target, layer)
        else:
            (acts, logits), grads = layer_activations(model, x, layer), None
        if acts.dim() != 4:
            raise ModelError(f"layer '{layer}' outputs shape {tuple(acts.shape)}; a CAM needs (B,K,h,w)")
        weights = self.model_weights(model, x, target, acts, grads, logits)
        return assemble_cam(weights, acts, x.shape[-2:], relu=self.relu)

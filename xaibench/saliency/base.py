"""The explainer contract, the explainer registry, and the shared CAM core: the core owns the
hooks, the gradient to the layer, the weighted sum and the upsampling; a CAM variant is only
its weight formula (the pytorch-grad-cam `BaseCAM.get_cam_weights` shape, kept on device).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Literal

from torch import Tensor

from ..errors import LayerError, ModelError
from ..models.adapter import ModelAdapter
from ..models.attention import attention_sites
from ..models.gradients import layer_activations, layer_activations_and_gradients
from ..registry import Registry, check_fields, param
from ..tensorops import assemble_cam

Reduce = Literal["sum", "abs_sum", "abs_max", "l2"]
LAYER_HELP = ("layer of the map (xai list layers); auto: the model's default, else its last conv block (a ViT: the "
              "last encoder block's first norm; Swin: the last stage's norm)")
REDUCE_HELP = "how colour channels are combined into one map: sum, abs_sum, abs_max or l2"


class Explainer:
    """Maps a model-input batch `x` (B,C,H,W) and targets (B,) to float32 maps (B,H,W).

    Subclasses are dataclasses whose fields are their typed parameters (`param(default, help=...,
    ge=...)`); every range is checked when the explainer is built (bounds here, cross-field checks
    in a subclass's `__post_init__`, which calls this one). Per-image diagnostics (e.g. an
    integration error, a fallback taken) go to `self.diagnostics` as (B,) tensors.
    """

    registry_name: ClassVar[str] = "explainer"
    # "hooks": module hooks (ReLU rules, LRP); "attention": self-attention modules (ViTs); "lrp_rules": Zennit-type
    # LRP composites (not for self-attention); "resizable": inputs of other sizes (multi-scale);
    # "pooled_head": a global-average-pooled head (CAM); a `layer` field: a layer
    needs: ClassVar[frozenset[str]] = frozenset()
    control: ClassVar[bool] = False  # a control (random, center, edges: saliency/controls.py), not a real explainer

    def __post_init__(self) -> None:
        check_fields(self)
        self.diagnostics: dict[str, Tensor] = {}

    @property
    def name(self) -> str:
        return self.registry_name

    def __call__(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        self.diagnostics = {}
        if "hooks" in self.needs:
            model.require_hooks(self.name)
        with model.inference():  # eval mode, no parameter graph, also for direct `model.module` calls
            maps = self.explain(model, x, target)
        if maps.shape != (x.shape[0], x.shape[-2], x.shape[-1]):
            raise ModelError(f"{self.name} returned maps of shape {tuple(maps.shape)} for input {tuple(x.shape)}")
        return maps.float()

    def explain(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError


EXPLAINERS: Registry[Explainer] = Registry("explainer")


def unmet_needs(explainer: type[Explainer] | Explainer, model: ModelAdapter) -> str | None:
    """Why `explainer` cannot run on `model` — a TorchScript model has no hooks, a CNN no attention,
    a ViT no LRP composite rules, a ViT with a fixed position embedding takes one input size, a
    class-token head has no pooled map, a layer that is not a map — or None when it applies
    (`xai list explainers --model M`)."""
    layer = getattr(explainer, "layer", "auto") if not isinstance(explainer, type) else "auto"
    has_layer = dataclasses.is_dataclass(explainer) and "layer" in {f.name for f in dataclasses.fields(explainer)}
    if "attention" in explainer.needs and not attention_sites(model.module):
        return "needs a vision transformer (self-attention modules: nn.MultiheadAttention or timm Attention)"
    if "lrp_rules" in explainer.needs and attention_sites(model.module):
        return "LRP composites have no rules for self-attention, LayerNorm and GELU; use attnlrp"
    try:
        if "hooks" in explainer.needs:
            model.require_hooks(getattr(explainer, "registry_name", "this explainer"))
        if has_layer:
            model.resolve_layer(layer)
        if "resizable" in explainer.needs:
            require_resizable(model, getattr(explainer, "registry_name", "this explainer"))
        if "pooled_head" in explainer.needs and model.reads_class_token:
            return (f"model '{model.name}' reads its class token, not a global average of a feature map, so CAM's "
                    "head weights do not apply; use gradcam (its generalization to any head)")
    except LayerError as e:
        return str(e)
    return None


def require_resizable(model: ModelAdapter, what: str) -> None:
    """A LayerError when `what` (a multi-scale explainer) needs inputs of other sizes than the model takes."""
    if not model.resizable:
        h, w = model.input_size
        raise LayerError(f"{what} runs the model at several input sizes, but '{model.name}' only takes {h}×{w} "
                         "inputs (a vision transformer with a fixed position embedding; timm's dynamic_img_size=True "
                         "lifts that); use a single-scale CAM such as gradcam or layercam")


def check_feature_map(acts: Tensor, layer: str, what: str) -> None:
    """A LayerError unless `acts` is a (B,K,h,w) map (token layers already are: `ModelAdapter.capture`)."""
    if acts.dim() != 4:
        raise LayerError(f"layer '{layer}' outputs shape {tuple(acts.shape)}; {what} needs (B,K,h,w) feature maps "
                         "or (B,N,C) / (B,h,w,C) tokens on the patch grid (an encoder block, not a pooled head)")


def reduce_channels(attr: Tensor, reduce: str) -> Tensor:
    """(B,C,H,W) per-channel attribution → (B,H,W) map (docs/architecture.md "Contracts")."""
    if reduce == "sum":
        return attr.sum(1)
    if reduce == "abs_sum":
        return attr.abs().sum(1)
    if reduce == "abs_max":
        return attr.abs().amax(1)
    if reduce == "l2":
        return attr.pow(2).sum(1).sqrt()
    raise ValueError(f"unknown reduce '{reduce}'")


@dataclass
class CAMExplainer(Explainer):
    """Shared CAM core: map = ReLU(Σ_k w_k ⊙ A_k), upsampled bilinearly to the input size.

    A variant overrides `weights(acts, grads, logits, target)` returning (B,K,1,1) channel
    weights or (B,K,h,w) element weights. Variants whose weights need the model again
    (perturbation scores) override `model_weights` and set `uses_gradients = False`;
    `relu = False` for variants whose paper keeps the sign (CAM).
    """

    layer: str = param("auto", help=LAYER_HELP)
    uses_gradients: ClassVar[bool] = True
    relu: ClassVar[bool] = True

    def weights(self, acts: Tensor, grads: Tensor, logits: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def model_weights(
        self, model: ModelAdapter, x: Tensor, target: Tensor, acts: Tensor, grads: Tensor | None, logits: Tensor
    ) -> Tensor:
        """The weights, for variants that need the model and input again; default `weights`."""
        return self.weights(acts, grads, logits, target)

    def layer_passes(self, model: ModelAdapter, x: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None, Tensor]:
        """(activations (B,K,h,w), their gradients or None, logits) at the explainer's layer."""
        layer = model.resolve_layer(self.layer)
        if self.uses_gradients:
            acts, grads, logits = layer_activations_and_gradients(model, x, target, layer)
        else:
            (acts, logits), grads = layer_activations(model, x, layer), None
        check_feature_map(acts, layer, "a CAM")
        return acts, grads, logits

    def explain(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        acts, grads, logits = self.layer_passes(model, x, target)
        weights = self.model_weights(model, x, target, acts, grads, logits)
        return assemble_cam(weights, acts, x.shape[-2:], relu=self.relu)

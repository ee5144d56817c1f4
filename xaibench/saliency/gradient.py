"""Gradient-based explainers that attribute to input pixels: saliency, input×gradient, guided
backprop, deconvnet and guided Grad-CAM; the per-channel base the noise/path wrappers build on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from torch import Tensor

from ..errors import ConfigError, did_you_mean
from ..models.adapter import ModelAdapter
from ..models.gradients import input_gradients
from ..models.relu_rules import deconvnet_relu, guided_relu
from ..tensorops import assemble_cam
from .base import EXPLAINERS, Explainer, Reduce, reduce_channels
from .cam import GradCAM


@dataclass
class InputAttribution(Explainer):
    """An explainer with a per-input-channel attribution (B,C,H,W), reduced over colour
    channels by `reduce` (docs/architecture.md "Contracts"). Wrappers (SmoothGrad, VarGrad) call
    `attribute` on perturbed copies of the batch."""

    reduce: Reduce = "sum"

    def attribute(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def explain(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        return reduce_channels(self.attribute(model, x, target), self.reduce)


def gradient_method(name: str, params: dict | None = None, where: str = "method") -> InputAttribution:
    """Build a registered per-input-channel explainer by name (for the wrappers), or raise a
    ConfigError naming the valid ones."""
    valid = [n for n in EXPLAINERS.names() if issubclass_safe(EXPLAINERS.get(n).obj, InputAttribution)]
    if name not in valid:
        raise ConfigError(f"{where}: '{name}' is not a per-pixel gradient method.{did_you_mean(name, valid)} "
                          f"Valid: {', '.join(valid)}")
    return EXPLAINERS.build(name, **(params or {}))


def issubclass_safe(obj, cls) -> bool:
    return isinstance(obj, type) and issubclass(obj, cls)


@EXPLAINERS.register("saliency")
@dataclass
class Saliency(InputAttribution):
    """Gradient saliency (Simonyan et al., ICLR-W 2014): |∂y_c/∂x|, max over colour channels."""

    reduce: Reduce = "abs_max"

    def attribute(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        return input_gradients(model, x, target).abs_()


@EXPLAINERS.register("inputxgrad")
@dataclass
class InputXGradient(InputAttribution):
    """Input × gradient (Shrikumar et al. 2016, "Not just a black box"): x ⊙ ∂y_c/∂x."""

    def attribute(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        return x * input_gradients(model, x, target)


@EXPLAINERS.register("guided_backprop")
@dataclass
class GuidedBackprop(InputAttribution):
    """Guided backpropagation (Springenberg et al., ICLR-W 2015): the input gradient with every
    ReLU passing gradient only where its input > 0 and the gradient > 0 (hooks, removed after)."""

    needs: ClassVar[frozenset[str]] = frozenset({"hooks"})

    def attribute(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        with guided_relu(model):
            return input_gradients(model, x, target)


@EXPLAINERS.register("deconvnet")
@dataclass
class Deconvnet(InputAttribution):
    """Deconvnet (Zeiler & Fergus, ECCV 2014): the input gradient with every ReLU passing only
    the positive gradient, whatever its forward input (hooks, removed after)."""

    needs: ClassVar[frozenset[str]] = frozenset({"hooks"})

    def attribute(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        with deconvnet_relu(model):
            return input_gradients(model, x, target)


@EXPLAINERS.register("guided_gradcam")
@dataclass
class GuidedGradCAM(InputAttribution):
    """Guided Grad-CAM (Selvaraju et al., ICCV 2017): guided backprop ⊙ the Grad-CAM map of
    `layer` upsampled to the input (`bilinear` as in the paper; `nearest` is Captum's default)."""

    layer: str = "auto"
    upsample_mode: Literal["bilinear", "nearest"] = "bilinear"

    def attribute(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        gradcam = GradCAM(layer=self.layer)
        acts, grads, logits = gradcam.layer_passes(model, x, target)
        cam = assemble_cam(gradcam.weights(acts, grads, logits, target), acts, x.shape[-2:], mode=self.upsample_mode)
        with guided_relu(model):
            guided = input_gradients(model, x, target)
        return guided * cam[:, None]

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
from ..models.relu_rules import guided_relu, relu_rule
from ..registry import param
from ..tensorops import assemble_cam
from .base import EXPLAINERS, LAYER_HELP, REDUCE_HELP, Explainer, Reduce, reduce_channels
from .cam import GradCAM


@dataclass
class InputAttribution(Explainer):
    """An explainer with a per-input-channel attribution (B,C,H,W), reduced over colour
    channels by `reduce` (docs/architecture.md "Contracts"). Wrappers (SmoothGrad, VarGrad) call
    `attribute` on perturbed copies of the batch."""

    reduce: Reduce = param("sum", help=REDUCE_HELP)

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

    reduce: Reduce = param("abs_max", help=REDUCE_HELP)

    def attribute(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        return input_gradients(model, x, target).abs_()


@EXPLAINERS.register("inputxgrad")
@dataclass
class InputXGradient(InputAttribution):
    """Input × gradient (Shrikumar et al. 2016, "Not just a black box"): x ⊙ ∂y_c/∂x."""

    def attribute(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        return x * input_gradients(model, x, target)


@dataclass
class RuleGradient(InputAttribution):
    """The input gradient with every ReLU's backward replaced by `rule` (models/relu_rules.py;
    hooks and function mode removed after)."""

    rule: ClassVar[str] = "guided"

    needs: ClassVar[frozenset[str]] = frozenset({"hooks"})

    def attribute(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        with relu_rule(model, self.rule):
            return input_gradients(model, x, target)


@EXPLAINERS.register("guided_backprop")
@dataclass
class GuidedBackprop(RuleGradient):
    """Guided backpropagation (Springenberg et al., ICLR-W 2015): every ReLU passes the gradient
    only where its input > 0 and the gradient > 0."""


@EXPLAINERS.register("deconvnet")
@dataclass
class Deconvnet(RuleGradient):
    """Deconvnet (Zeiler & Fergus, ECCV 2014): every ReLU passes only the positive gradient,
    whatever its forward input."""

    rule: ClassVar[str] = "deconvnet"


@EXPLAINERS.register("guided_gradcam")
@dataclass
class GuidedGradCAM(InputAttribution):
    """Guided Grad-CAM (Selvaraju et al., ICCV 2017): guided backprop ⊙ the Grad-CAM map of
    `layer` upsampled to the input (`bilinear` as in the paper; `nearest` is Captum's default)."""

    layer: str = param("auto", help=LAYER_HELP)
    upsample_mode: Literal["bilinear", "nearest"] = param("bilinear", help="upsampling of the Grad-CAM map to the input")

    def attribute(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        gradcam = GradCAM(layer=self.layer)
        acts, grads, logits = gradcam.layer_passes(model, x, target)
        cam = assemble_cam(gradcam.weights(acts, grads, logits, target), acts, x.shape[-2:], mode=self.upsample_mode)
        with guided_relu(model):
            guided = input_gradients(model, x, target)
        return guided * cam[:, None]

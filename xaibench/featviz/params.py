"""Every option of activation maximization with pyramid preconditioning, with the defaults of
docs/methods.md §Pyramid activation maximization, as one typed dataclass (the `featviz:` config section and `visualize` kwargs).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from ..errors import ConfigError
from ..registry import check_fields, coerce_params, param, param_bounds, param_fields
from .pyramid import PyramidMode


@dataclass
class FeatvizParams:
    """Activation-maximization settings (Tao et al. 2017, "Deep visualization based on the spatial
    pyramid decomposition"; docs/methods.md §Pyramid activation maximization). Spaces: the image is optimized in pixel space
    [0,1] and clipped to it; `lr` is in units of that range (α = 0.05 × range in the spec).

    Choices the spec leaves open (ours): penalty weights `p_norm_weight`/`tv_weight`, `blur_every`,
    the noise start's centre (the model's mean pixel, i.e. input-space zero), `cam_layer`.
    One deliberate departure: `lr` defaults to 0.003, not the spec's 0.05 × range. With a unit-std
    gradient, a Laplacian-recombined step of std ≈ 2 and momentum 0.9, α = 0.05 moves pixels by
    about the whole range per step: on builtin:synthetic-cnn the images saturate to flat primaries
    and the objective oscillates instead of rising (bench/featviz_spectrum.py --lr to compare).
    """

    objective: Literal["class", "channel", "unit"] = param("class", help="maximized: a class score, a channel's "
                                                                         "mean or its centre unit at layer")
    class_score: Literal["logit", "log_softmax"] = param("logit", help="φ of the class objective: logit F_c (the spec) "
                                                                       "or log_softmax log P_c")
    targets: list[int] = param(default_factory=list, help="class or channel ids; []: all of them", ge=0)
    layer: str = param("auto", help="layer of the channel and unit objectives; auto: the model's default layer")
    steps: int = param(256, help="gradient-ascent steps", ge=1)
    lr: float = param(0.003, help="step size α in units of the pixel range [0, 1] (spec: 0.05; see the docstring)",
                      gt=0)
    momentum: float = param(0.9, help="momentum μ of the ascent", ge=0, lt=1)
    jitter: int = param(8, help="largest random roll per axis, drawn per step, px; 0: off", ge=0)
    pyramid: PyramidMode = param("laplacian", help="gradient preconditioning: laplacian, gaussian, both or none")
    levels: int = param(4, help="pyramid levels K", ge=1)
    grad_eps: float = param(1e-8, help="δ of the gradient normalization g / (std(g) + δ)", ge=0)
    p_norm_weight: float = param(0.05, help="λ of the p-norm penalty (eq. 5); 0: off", ge=0)
    p_norm_p: float = param(2.0, help="p of the p-norm penalty", ge=1)
    tv_weight: float = param(0.05, help="λ of the total-variation penalty (eq. 6); 0: off", ge=0)
    tv_beta: float = param(1.0, help="β of the total-variation penalty", gt=0)
    blur_every: int = param(4, help="Gaussian blur of the image every n steps; 0: off", ge=0)
    blur_sigma0: float = param(1.0, help="blur σ at the first step, px, decaying linearly to blur_sigma1", ge=0)
    blur_sigma1: float = param(0.3, help="blur σ at the last step, px", ge=0)
    cam_restrict: bool = param(False, help="multiply every update by the class's Grad-CAM at the start (class "
                                           "objective only)")
    cam_layer: str = param("auto", help="layer of that Grad-CAM; auto: the model's default layer")
    init: Literal["noise", "image"] = param("noise", help="start: noise (Gaussian around the mean pixel) or image")
    init_std: float = param(0.01, help="σ of the Gaussian start, pixel units", ge=0)
    init_image: str = param("", help="image file of init: image (else pass init_images= to visualize)")
    seed: int = param(0, help="seed of the start noise and the jitter")
    batch_size: int = param(16, help="targets optimized together in one batch", ge=1)

    def __post_init__(self) -> None:
        """Every range is checked here, when the settings are built (bounds from the fields)."""
        check_fields(self)
        if self.cam_restrict and self.objective != "class":
            raise ConfigError(f"cam_restrict needs objective 'class' (the mask is the class's Grad-CAM), "
                              f"got objective '{self.objective}'")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None, where: str = "featviz") -> FeatvizParams:
        """Build from a config mapping; unknown keys, wrong types and bad values raise a
        ConfigError naming the key."""
        checked = coerce_params(param_fields(cls), dict(values or {}), where, param_bounds(cls))
        try:
            return cls(**checked)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from e

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

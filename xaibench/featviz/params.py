"""Every option of activation maximization with pyramid preconditioning, with the defaults of
docs/methods.md §Pyramid activation maximization, as one typed dataclass (the `featviz:` config section and `visualize` kwargs).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

from ..errors import ConfigError
from ..registry import coerce_params, param_fields
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

    objective: Literal["class", "channel", "unit"] = "class"
    class_score: Literal["logit", "log_softmax"] = "logit"  # φ of `class`: F_c (spec) or log P_c (opt-in)
    targets: list[int] = field(default_factory=list)  # class ids or channel ids; [] = all of them
    layer: str = "auto"  # layer of `channel`/`unit` objectives
    steps: int = 256
    lr: float = 0.003  # α, × the pixel range [0,1] (spec: 0.05; see the docstring)
    momentum: float = 0.9  # μ
    jitter: int = 8  # max |roll| in px per axis, drawn per step; 0 = off
    pyramid: PyramidMode = "laplacian"
    levels: int = 4  # K
    grad_eps: float = 1e-8  # δ of g / (std(g) + δ)
    p_norm_weight: float = 0.05  # λ of eq. 5 (0 = off)
    p_norm_p: float = 2.0
    tv_weight: float = 0.05  # λ of eq. 6 (0 = off)
    tv_beta: float = 1.0
    blur_every: int = 4  # Gaussian blur of x every n steps (0 = off)
    blur_sigma0: float = 1.0  # σ at the first step, decaying linearly …
    blur_sigma1: float = 0.3  # … to σ at the last step
    cam_restrict: bool = False  # multiply every update by the class's Grad-CAM at x0 (class objective only)
    cam_layer: str = "auto"
    init: Literal["noise", "image"] = "noise"
    init_std: float = 0.01  # σ of the Gaussian start, pixel units
    init_image: str = ""  # image file for init="image" (else pass init_images= to visualize)
    seed: int = 0
    batch_size: int = 16  # targets optimized together in one batch

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None, where: str = "featviz") -> FeatvizParams:
        """Build from a config mapping; unknown keys and wrong types raise ConfigError naming the key."""
        params = cls(**coerce_params(param_fields(cls), dict(values or {}), where))
        params.check(where)
        return params

    def check(self, where: str = "featviz") -> None:
        """Raise ConfigError for out-of-range values (a user's mistake, named with the valid range)."""
        rules = [
            ("steps", self.steps >= 1, ">= 1"),
            ("lr", self.lr > 0, "> 0"),
            ("momentum", 0 <= self.momentum < 1, "in [0, 1)"),
            ("jitter", self.jitter >= 0, ">= 0"),
            ("levels", self.levels >= 1, ">= 1"),
            ("grad_eps", self.grad_eps >= 0, ">= 0"),
            ("p_norm_weight", self.p_norm_weight >= 0, ">= 0"),
            ("p_norm_p", self.p_norm_p >= 1, ">= 1"),
            ("tv_weight", self.tv_weight >= 0, ">= 0"),
            ("tv_beta", self.tv_beta > 0, "> 0"),
            ("blur_every", self.blur_every >= 0, ">= 0"),
            ("blur_sigma0", self.blur_sigma0 >= 0, ">= 0"),
            ("blur_sigma1", self.blur_sigma1 >= 0, ">= 0"),
            ("init_std", self.init_std >= 0, ">= 0"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
        ]
        for name, ok, valid in rules:
            if not ok:
                raise ConfigError(f"{where}.{name} = {getattr(self, name)!r} is not valid: must be {valid}")
        if self.cam_restrict and self.objective != "class":
            raise ConfigError(f"{where}.cam_restrict needs objective 'class' (the mask is the class's Grad-CAM), "
                              f"got objective '{self.objective}'")

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

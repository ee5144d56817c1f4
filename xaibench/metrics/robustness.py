"""Explanation robustness and infidelity (Yeh et al., NeurIPS 2019): how much the map moves under a
small input noise (re-running the explainer), and how well it predicts the model's response to noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from ..errors import ConfigError
from ..memory import ChunkSize
from ..registry import param
from ..tensorops import chunks, class_scores
from .base import METRICS, ImageMetric, MetricResult, clean_maps
from .draws import image_generators, normal_draw, uniform_draw


@METRICS.register("max_sensitivity")
@dataclass
class MaxSensitivity(ImageMetric):
    """Max-sensitivity (Yeh et al., "On the (In)fidelity and Sensitivity of Explanations", NeurIPS 2019),
    docs/metrics.md "Robustness": max over `samples` noisy copies x + δ, δ uniform in the L∞ ball of
    `radius`, of ‖Φ(x+δ) − Φ(x)‖_F / ‖Φ(x)‖_F (Captum `sensitivity_max`); Φ(x) are the given maps.
    Extra `mean` is the mean over the copies (avg-sensitivity); lower is better."""

    higher_is_better: ClassVar[bool] = False
    needs: ClassVar[frozenset[str]] = frozenset({"explain"})
    radius: float = param(0.02, help="half-width of the uniform L-infinity noise, model-input units", gt=0)
    samples: int = param(10, help="noisy copies re-explained per image", ge=1)
    samples_per_call: int = param(64, help="noisy copies per explainer call (an explainer call, not a model call: no auto)", ge=1)
    seed: int = param(0, help="seed of the noise (mixed with each image's seed)")

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        if explain is None:
            raise ConfigError("max_sensitivity needs the explainer: call it with explain=callable(model, x, target)")
        b = x.shape[0]
        target = target.to(x.device).long()
        original = clean_maps(maps).detach().to(x.device).flatten(1)
        norm = original.norm(dim=1)
        norm = torch.where(norm == 0, torch.ones_like(norm), norm)  # Captum: a zero map is not rescaled
        gens = image_generators(self.seed, seeds, b, "noise")
        img = torch.arange(b, device=x.device).repeat_interleave(self.samples)  # image-major (Captum's order)
        sens = torch.empty(b * self.samples, device=x.device)
        for sl in chunks(len(img), self.samples_per_call):  # each chunk is one explainer call
            i = img[sl]
            delta = uniform_draw([gens[k] for k in i.tolist()], tuple(x.shape[1:]), -self.radius, self.radius)
            again = clean_maps(explain(model, x[i] + delta.to(x), target[i])).detach().to(x.device).flatten(1)
            sens[sl] = (again - original[i]).norm(dim=1) / norm[i]
        sens = sens.view(b, self.samples)
        return MetricResult(values=sens.amax(1), curves=sens, extras={"mean": sens.mean(1)})


@METRICS.register("infidelity")
@dataclass
class Infidelity(ImageMetric):
    """Infidelity (Yeh et al., NeurIPS 2019), docs/metrics.md "Robustness": E_I[(β·Iᵀ Φ − (f_c(x) − f_c(x − I)))²]
    over `samples` Gaussian perturbations I ~ N(0, noise²) of the model input, Φ the map broadcast
    over channels, f_c the class score; β = 1, or with `normalize` the least-squares scale
    β = Σ(IᵀΦ)(Δf) / Σ(IᵀΦ)² (Captum `infidelity(normalize=True)`); lower is better."""

    higher_is_better: ClassVar[bool] = False
    noise: float = param(0.1, help="std of the Gaussian input perturbation, model-input units", gt=0)
    samples: int = param(10, help="perturbations per image", ge=1)
    normalize: bool = param(True, help="scale the map by its least-squares factor beta first (scale-free)")
    score: Literal["logit", "softmax"] = param("logit", help="class score f_c: logit or softmax")
    chunk_size: ChunkSize = param(64, help="perturbed inputs per model call; auto: sized from the memory budget",
                                  ge=1)
    seed: int = param(0, help="seed of the perturbations (mixed with each image's seed)")

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        b = x.shape[0]
        s_map = clean_maps(maps).to(x.device)[:, None]  # (B,1,H,W) broadcast over channels
        target = target.to(x.device).long()
        kind = model.score_kind(self.score)
        gens = image_generators(self.seed, seeds, b, "noise")
        img = torch.arange(b, device=x.device).repeat_interleave(self.samples)  # image-major (Captum's order)
        dot = torch.empty(b * self.samples, dtype=torch.float64, device=x.device)
        diff = torch.empty_like(dot)
        with torch.inference_mode(), model.fused_inference():  # BatchNorm-folded copy for the many forwards
            f_x = torch.cat([class_scores(model(x[sl]), target[sl], kind) for sl in chunks(b, self.chunk_size)])
            for sl in chunks(len(img), self.chunk_size):
                i = img[sl]
                pert = normal_draw([gens[k] for k in i.tolist()], tuple(x.shape[1:]), self.noise).to(x)
                dot[sl] = (pert * s_map[i]).flatten(1).sum(1).double()
                diff[sl] = (f_x[i] - class_scores(model(x[i] - pert), target[i], kind)).double()
        dot, diff = dot.view(b, self.samples), diff.view(b, self.samples)
        if self.normalize:
            aa, ab = (dot * dot).sum(1, keepdim=True), (dot * diff).sum(1, keepdim=True)
            beta = torch.where(aa != 0, ab / torch.where(aa != 0, aa, torch.ones_like(aa)), torch.zeros_like(aa))
        else:
            beta = torch.ones(b, 1, dtype=torch.float64, device=x.device)
        err = (beta * dot - diff) ** 2
        return MetricResult(values=err.mean(1).float(), curves=err.float())

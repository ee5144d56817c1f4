"""Faithfulness metrics: deletion and insertion curves (RISE), average drop, increase in
confidence and average gain (Grad-CAM++, Zhang et al. 2023), with named toolkit protocols.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..imageops import check_odd_kernel, gaussian_blur
from ..memory import ChunkSize
from ..models.adapter import ModelAdapter
from ..registry import param
from ..tensorops import chunks, class_scores, minmax
from .base import DERIVED, METRICS, DerivedScore, ImageMetric, MetricResult, clean_maps
from .ordering import index_rank, saliency_rank, tie_seeds

Protocol = Literal["default", "rise", "torchcam", "quantus"]
Substrate = Literal["zeros", "blur", "mean", "black"]
Score = Literal["softmax", "logit"]

# Each preset: the deletion and insertion substrates, the score, the step count or the pixels per
# step, the class (the given target or the model's top-1), the step schedule, the AUC's x-axis and
# the order of tied pixels (docs/metrics.md "Protocol").
PRESETS: dict[str, dict[str, Any]] = {
    # ours: even schedule n_i = floor(i·HW/steps), trapezoid over the deleted fraction in [0,1]
    "default": dict(deletion="zeros", insertion="blur", score="softmax", steps=224, pixels_per_step=None,
                    target="given", schedule="even", auc="fraction", blur="gaussian", ties="seeded"),
    # RISE reference CausalMetric(step=224): 224 pixels a step, AUC = trapezoid with equal spacing
    # over [0,1], blur = scipy gaussian_filter kernel with zero padding in input space, top-1 class,
    # salient order flip(argsort(S)): among ties the higher pixel index first
    "rise": dict(deletion="zeros", insertion="blur", score="softmax", steps=None, pixels_per_step=224,
                 target="top1", schedule="fixed_step", auc="uniform", blur="rise", ties="descending"),
    # torchcam DeletionInsertionMetric: zeros for both curves, 20 steps of ceil(HW/20) pixels, trapezoid
    # over the actual perturbed fraction, top-1 class, softmax as in its documented usage, stable
    # descending argsort: among ties the lower pixel index first
    "torchcam": dict(deletion="zeros", insertion="zeros", score="softmax", steps=20, pixels_per_step=None,
                     target="top1", schedule="torchcam", auc="fraction", blur="gaussian", ties="ascending"),
    # quantus PixelFlipping: baseline "black" (the image minimum in input space), the curve starts after
    # the first step (no unperturbed point), AUC = np.trapz with dx=1 (un-normalized), given target
    "quantus": dict(deletion="black", insertion="black", score="softmax", steps=224, pixels_per_step=None,
                    target="given", schedule="quantus", auc="unit_step", blur="gaussian", ties="seeded"),
}


def rise_blur(x: Tensor, kernel: int = 11, sigma: float = 5.0) -> Tensor:
    """The RISE reference substrate (Petsiuk et al. 2018, `gkern` + `conv2d(padding=k//2)`): a
    kernel made by `scipy.ndimage.gaussian_filter` of a centred delta (reflect-folded tails),
    applied per channel with zero padding to the model input."""
    import numpy as np
    from scipy.ndimage import gaussian_filter

    delta = np.zeros((kernel, kernel))
    delta[kernel // 2, kernel // 2] = 1.0
    k = torch.from_numpy(gaussian_filter(delta, sigma)).to(x)
    c = x.shape[1]
    return F.conv2d(x, k.expand(c, 1, kernel, kernel), padding=kernel // 2, groups=c)


def step_schedule(n_pixels: int, steps: int | None, schedule: str, auc: str,
                  pixels_per_step: int | None = None) -> tuple[list[int], Tensor]:
    """Pixel counts perturbed at each curve point, and the x-coordinates of the AUC. `pixels_per_step`
    (RISE's `step`), when given, is the step of the fixed-step schedules instead of ceil(HW/steps)."""
    step = pixels_per_step or math.ceil(n_pixels / steps)
    steps = steps or math.ceil(n_pixels / step)
    if schedule == "even":
        counts = [i * n_pixels // steps for i in range(steps + 1)]
    elif schedule == "fixed_step":
        counts = [min(i * step, n_pixels) for i in range(math.ceil(n_pixels / step) + 1)]
    elif schedule == "torchcam":
        counts = [*range(0, n_pixels, step), n_pixels]
    else:  # quantus: ceil(HW/step) perturbations, the first point after the first step
        counts = [min(i * step, n_pixels) for i in range(1, math.ceil(n_pixels / step) + 1)]
    if auc == "fraction":
        xs = torch.tensor(counts, dtype=torch.float64) / n_pixels
    elif auc == "uniform":
        xs = torch.linspace(0.0, 1.0, len(counts), dtype=torch.float64)
    else:
        xs = torch.arange(len(counts), dtype=torch.float64)
    return counts, xs


@dataclass
class CausalCurve(ImageMetric):
    """Deletion/insertion game of RISE (Petsiuk et al., BMVC 2018), docs/metrics.md "Faithfulness".

    `baseline`, `score` and `steps` left at None take the `protocol` preset's values
    (default | rise | torchcam | quantus); `steps` is a count of steps. Every curve point of every
    image runs as batched forwards in `chunk_size` pieces under `torch.inference_mode()`.
    """

    mode: ClassVar[str] = "deletion"
    protocol: Protocol = param("default", help="a toolkit's conventions: default, rise, torchcam or quantus "
                                               "(docs/metrics.md)")
    baseline: Substrate | None = param(None, help="substrate: zeros, blur, mean or black; null: the protocol's")
    score: Score | None = param(None, help="class score on the curve: softmax or logit; null: the protocol's")
    steps: int | None = param(None, help="number of curve steps; null: the protocol's (224, torchcam 20; rise: "
                                         "224 pixels a step)", ge=1)
    pixels_per_step: int | None = param(None, help="pixels perturbed a step (RISE's `step`; rise, torchcam and "
                                                   "quantus schedules); null: the protocol's (rise 224)", ge=1)
    blur_kernel: int = param(11, help="Gaussian kernel of the blur substrate, px (odd)", ge=1)
    blur_sigma: float = param(5.0, help="Gaussian sigma of the blur substrate, px", gt=0)
    chunk_size: ChunkSize = param(64, help="perturbed inputs per model call; auto: sized from the memory budget", ge=1)
    seed: int = param(0, help="seed of the tie-breaking pixel order")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_odd_kernel(self.blur_kernel)
        if self.pixels_per_step is not None and self.steps is not None:
            raise ConfigError("give either steps (a count) or pixels_per_step (pixels a step), not both")
        if self.pixels_per_step is not None and PRESETS[str(self.protocol)]["schedule"] == "even":
            raise ConfigError(f"pixels_per_step applies to the rise, torchcam and quantus schedules; protocol "
                              f"'{self.protocol}' takes steps")

    def resolved_protocol(self) -> dict[str, Any]:
        """The preset's values with the explicit parameters applied (recorded in run.json): an explicit
        `steps` replaces the preset's pixels per step, an explicit `pixels_per_step` its step count."""
        preset = PRESETS[str(self.protocol)]
        explicit = self.steps is not None or self.pixels_per_step is not None
        return dict(
            protocol=str(self.protocol),
            baseline=self.baseline or preset[self.mode],
            score=self.score or preset["score"],
            steps=self.steps if explicit else preset["steps"],
            pixels_per_step=self.pixels_per_step if explicit else preset["pixels_per_step"],
            target=preset["target"],
            schedule=preset["schedule"],
            auc=preset["auc"],
            ties=preset["ties"],
            blur=f"{preset['blur']}({self.blur_kernel},{self.blur_sigma})",
            chunk_size=self.chunk_size,
            seed=self.seed,
        )

    def substrate(self, x: Tensor, kind: str) -> Tensor:
        """The image the curve perturbs towards (deletion) or starts from (insertion), input space."""
        if kind == "zeros":
            return torch.zeros_like(x)
        if kind == "mean":
            return x.mean(dim=(2, 3), keepdim=True).expand_as(x)
        if kind == "black":  # Quantus' "black": the image's minimum over all channels and pixels
            return x.amin(dim=(1, 2, 3), keepdim=True).expand_as(x)
        if PRESETS[str(self.protocol)]["blur"] == "rise":
            return rise_blur(x, self.blur_kernel, self.blur_sigma)
        return gaussian_blur(x, self.blur_kernel, self.blur_sigma)

    def curves(self, model: ModelAdapter, x: Tensor, maps: Tensor, target: Tensor,
               seeds: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(B,T) curve of class scores and (T,) float64 CPU x-coordinates of the AUC."""
        p = self.resolved_protocol()
        b, c, h, w = x.shape
        n_pixels = h * w
        counts, xs = step_schedule(n_pixels, p["steps"], p["schedule"], p["auc"], p["pixels_per_step"])
        if p["ties"] == "seeded":
            rank = saliency_rank(clean_maps(maps).to(x.device), tie_seeds(self.seed, seeds, b))  # (B,HW)
        else:  # the reference toolkit's index order
            rank = index_rank(clean_maps(maps).to(x.device), p["ties"])
        deleting = self.mode == "deletion"
        base = self.substrate(x, p["baseline"])
        # the point whose image is exactly x: none perturbed (deletion) or all inserted (insertion)
        x_count = 0 if deleting else n_pixels
        target = target.to(x.device).long()
        t = len(counts)
        curve = torch.empty(b, t, dtype=torch.float32, device=x.device)
        with torch.inference_mode(), model.fused_inference():
            if p["target"] == "top1" or x_count in counts:
                logits_x = model(x)
                if p["target"] == "top1":
                    target = logits_x.argmax(dim=1)
                if x_count in counts:
                    curve[:, counts.index(x_count)] = class_scores(logits_x, target, model.score_kind(p["score"]))
            point_ids = torch.tensor([i for i, n in enumerate(counts) if n != x_count], device=x.device)
            counts_t = torch.tensor(counts, device=x.device)
            jobs = torch.stack(torch.meshgrid(torch.arange(b, device=x.device), point_ids, indexing="ij"), -1)
            jobs = jobs.reshape(-1, 2)
            for sl in chunks(jobs.shape[0], self.chunk_size):
                img, pt = jobs[sl].unbind(1)
                perturbed = (rank[img] < counts_t[pt, None]).view(-1, 1, h, w)
                if deleting:
                    batch = torch.where(perturbed, base[img], x[img])
                else:
                    batch = torch.where(perturbed, x[img], base[img])
                curve[img, pt] = class_scores(model(batch), target[img], model.score_kind(p["score"]))
        return curve, xs

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        curve, xs = self.curves(model, x, maps, target, seeds)
        auc = torch.trapezoid(curve.double().cpu(), xs, dim=1).float().to(curve.device)  # fp64: on CPU (MPS)
        return MetricResult(values=auc, curves=curve)


@METRICS.register("deletion")
@dataclass
class Deletion(CausalCurve):
    """Deletion AUC (Petsiuk et al., RISE, BMVC 2018): most salient pixels replaced first by the
    substrate (default zeros in input space); area under the class-score curve, lower is better."""

    mode: ClassVar[str] = "deletion"
    higher_is_better: ClassVar[bool] = False


@METRICS.register("insertion")
@dataclass
class Insertion(CausalCurve):
    """Insertion AUC (Petsiuk et al., RISE, BMVC 2018): most salient pixels of x written first into
    the substrate (default blur(x, 11, 5)); area under the class-score curve, higher is better.
    With `protocol: quantus` it mirrors PixelFlipping's conventions (Quantus has no insertion)."""

    mode: ClassVar[str] = "insertion"
    higher_is_better: ClassVar[bool] = True


# What must agree between an insertion and a deletion for insertion − deletion to mean anything
# (the substrate differs by design; chunk_size and blur do not change the deletion curve)
PAIRED = ("protocol", "score", "steps", "pixels_per_step", "target", "schedule", "auc", "ties")


def overall_scores(metrics: list[tuple[str, ImageMetric]]) -> list[DerivedScore]:
    """`overall` = insertion − deletion per image, the RISE paper's single figure of both games
    (Petsiuk et al., BMVC 2018, §4), for every insertion and deletion entry measured with the same
    protocol (`PAIRED`). Named `overall` + what both display names share after `insertion` and
    `deletion` (`insertion_rise`, `deletion_rise` → `overall_rise`), else `overall_<ins>_<del>`;
    an insertion and a deletion with different protocols give none (and a warning)."""
    import warnings

    ins = [(k, m) for k, m in metrics if isinstance(m, Insertion)]
    dels = [(k, m) for k, m in metrics if isinstance(m, Deletion)]
    out: list[DerivedScore] = []
    for ki, mi in ins:
        pi = {f: mi.resolved_protocol()[f] for f in PAIRED}
        for kd, md in dels:
            if {f: md.resolved_protocol()[f] for f in PAIRED} != pi:
                continue
            suffix = ki.removeprefix("insertion")
            name = f"overall{suffix}" if ki.startswith("insertion") and kd == f"deletion{suffix}" else f"overall_{ki}_{kd}"
            out.append(DerivedScore(name, (ki, kd), True, f"{ki} - {kd}, both with " + ", ".join(f"{f}={v}" for f, v in pi.items()),
                                    lambda insertion, deletion: insertion - deletion))
    if ins and dels and not out:
        warnings.warn(f"no overall score: the insertion ({', '.join(k for k, _ in ins)}) and deletion "
                      f"({', '.join(k for k, _ in dels)}) entries use different protocols", stacklevel=2)
    return out


DERIVED.append(overall_scores)


@dataclass
class ConfidenceChange(ImageMetric):
    """Y = P_c(x) against O = P_c(x ⊙ Ŝ), Ŝ the min-max normalized map broadcast over channels
    (docs/metrics.md "Average Drop / Increase in Confidence"). `masking: pixel` multiplies the image in
    pixel space (black means black), `input` multiplies the model input (torchcam's convention).
    One forward of x and one of the masked image per image; each of the three metrics reports its
    own figure only (configure the others to get them, with their own directions)."""

    key: ClassVar[str] = "average_drop"
    score: Score = param("softmax", help="class score compared: softmax or logit")
    masking: Literal["pixel", "input"] = param("pixel", help="the map multiplies the pixels, or the model input "
                                                             "(torchcam)")
    chunk_size: ChunkSize = param(64, help="images per model call; auto: sized from the memory budget", ge=1)

    def scores(self, model: ModelAdapter, x: Tensor, maps: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        s = minmax(clean_maps(maps).to(x.device))[:, None]
        masked = model.normalize(model.denormalize(x) * s) if self.masking == "pixel" else x * s
        both = torch.cat([x, masked])
        tgt = target.to(x.device).long().repeat(2)
        out = torch.empty(both.shape[0], dtype=torch.float32, device=x.device)
        with torch.inference_mode():
            for sl in chunks(both.shape[0], self.chunk_size):
                out[sl] = class_scores(model(both[sl]), tgt[sl], model.score_kind(self.score))
        return out[: x.shape[0]].double().cpu(), out[x.shape[0] :].double().cpu()

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        y, o = self.scores(model, x, maps, target)
        return MetricResult(values=(100 * self.figure(y, o)).float().to(x.device))

    @staticmethod
    def figure(y: Tensor, o: Tensor) -> Tensor:
        """The per-image figure (0…1) from the scores Y of the image and O of the masked image."""
        raise NotImplementedError


@METRICS.register("average_drop")
@dataclass
class AverageDrop(ConfidenceChange):
    """Average drop (Chattopadhay et al., Grad-CAM++, WACV 2018): 100·max(0, Y−O)/Y per image
    (the dataset mean is the published figure); lower is better."""

    key: ClassVar[str] = "average_drop"
    higher_is_better: ClassVar[bool] = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.score == "logit":
            raise ConfigError("average_drop: score 'logit' is not allowed: the drop (Y − O)/Y is defined for "
                              "positive scores only and a logit can be zero or negative; use score: softmax")

    @staticmethod
    def figure(y: Tensor, o: Tensor) -> Tensor:
        return torch.where(y > 0, (y - o).clamp_min(0) / y.abs().clamp_min(1e-300), 0.0)


@METRICS.register("increase_in_confidence")
@dataclass
class IncreaseInConfidence(ConfidenceChange):
    """Increase in confidence (Chattopadhay et al., Grad-CAM++, WACV 2018): 100·[O > Y] per image;
    higher is better."""

    key: ClassVar[str] = "increase_in_confidence"
    higher_is_better: ClassVar[bool] = True

    @staticmethod
    def figure(y: Tensor, o: Tensor) -> Tensor:
        return (o > y).double()


@METRICS.register("average_gain")
@dataclass
class AverageGain(ConfidenceChange):
    """Average gain (Zhang et al., Opti-CAM, 2023): 100·max(0, O−Y)/(1−Y) per image; higher is better."""

    key: ClassVar[str] = "average_gain"
    higher_is_better: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.score == "logit":
            raise ConfigError("average_gain: score 'logit' is not allowed: the gain (O − Y)/(1 − Y) divides by "
                              "the headroom of a probability, which a logit does not have; use score: softmax")

    @staticmethod
    def figure(y: Tensor, o: Tensor) -> Tensor:
        return torch.where(y < 1, (o - y).clamp_min(0) / (1 - y).clamp_min(1e-300), 0.0)

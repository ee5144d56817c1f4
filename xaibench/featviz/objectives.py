"""What activation maximization maximizes: a class logit, a channel's mean activation at a layer,
the centre unit of a channel, or (feature inversion) the closeness of a layer's activations to a
given image's — one target per batch row (docs/methods.md §Pyramid activation maximization "Objective").
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ..errors import ConfigError, LayerError
from ..models.adapter import ModelAdapter

Objective = Literal["class", "channel", "unit", "inversion"]
OBJECTIVES: tuple[str, ...] = ("class", "channel", "unit", "inversion")


def select_units(acts: Tensor, targets: Tensor, objective: str) -> Tensor:
    """(B,) objective of each row: `channel` = spatial mean of channel targets[b] of (B,K,h,w)
    activations, `unit` = its centre element (h//2, w//2); for (B,D) activations both are
    element targets[b] (Erhan et al. 2009; docs/methods.md §Pyramid activation maximization)."""
    rows = torch.arange(acts.shape[0], device=acts.device)
    chosen = acts[rows, targets.to(acts.device)]
    if chosen.dim() == 1:
        return chosen
    if objective == "channel":
        return chosen.flatten(1).mean(1)
    if objective == "unit":
        h, w = chosen.shape[-2:]
        return chosen[:, h // 2, w // 2]
    raise ConfigError(f"unknown objective '{objective}'. Valid: {', '.join(OBJECTIVES)}")


def inversion_values(acts: Tensor, reference: Tensor) -> Tensor:
    """(B,) φ = −‖φ(x) − φ_0‖² / ‖φ_0‖², the negated normalized loss of feature inversion (Tao et
    al. 2017 eq. 4, after Mahendran & Vedaldi 2015): 0 when the activations match exactly."""
    diff = (acts.float() - reference.float()).flatten(1).pow(2).sum(1)
    return -diff / reference.float().flatten(1).pow(2).sum(1).clamp_min(torch.finfo(torch.float32).tiny)


def objective_values(model: ModelAdapter, x: Tensor, targets: Tensor, objective: str,
                     layer: str | None, class_score: str = "logit",
                     reference: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """One forward of the model-input batch `x`: ((B,) objective values φ_b(x_b), (B,N) logits).
    `class` is the pre-softmax logit F_c (Simonyan et al. 2014), or with `class_score="log_softmax"`
    log P_c, which also pushes the other classes down; `channel`/`unit` read `layer`;
    `inversion` compares `layer`'s activations with `reference` (B,…), those of the images to
    invert (Tao et al. 2017 eqs. 2–4)."""
    if objective == "class":
        logits = model(x)
        scores = logits.log_softmax(1) if class_score == "log_softmax" else logits
        return scores.gather(1, targets.view(-1, 1).to(logits.device)).squeeze(1), logits
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective '{objective}'. Valid: {', '.join(OBJECTIVES)}")
    with model.capture(layer) as cap:
        logits = model(x)
        acts = cap.activation
    if objective == "inversion":
        if reference is None:
            raise ConfigError("objective 'inversion' needs the activations of the images to invert")
        return inversion_values(acts, reference), logits
    return select_units(acts, targets, objective), logits


def target_count(model: ModelAdapter, objective: str, layer: str | None) -> tuple[int, str | None]:
    """How many targets the objective has (classes, or channels of `layer`) and the resolved
    layer name (None for `class`), from one forward of a single blank image."""
    h, w = model.input_size
    blank = model.normalize(torch.full((1, model.channels, h, w), 0.5, device=model.device))
    if objective == "class":
        with torch.no_grad():
            return int(model(blank).shape[1]), None
    name = model.resolve_layer(layer or "auto")
    with torch.no_grad(), model.capture(name) as cap:
        model(blank)
    acts = cap.activation
    if objective == "inversion":
        return 0, name  # one target per image to invert, counted by the caller
    if acts.dim() not in (2, 4):
        raise LayerError(f"layer '{name}' outputs shape {tuple(acts.shape)}; objective '{objective}' needs "
                         "(B,K,h,w) or (B,D) activations")
    return int(acts.shape[1]), name


def check_targets(targets: list[int], count: int, objective: str, layer: str | None) -> list[int]:
    """Validate target ids against the number of classes/channels; [] means all of them."""
    if not targets:
        return list(range(count))
    bad = [t for t in targets if not 0 <= int(t) < count]
    if bad:
        what = ("classes" if objective == "class" else "images to invert" if objective == "inversion"
                else f"channels at layer '{layer}'")
        raise ConfigError(f"featviz targets {bad} out of range: the model has {count} {what} (valid 0..{count - 1})")
    return [int(t) for t in targets]

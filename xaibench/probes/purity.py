"""Feature purity (Chen, Cong & Huang 2021; docs/methods.md §Feature purity): the normalized entropy of how
often each channel of a layer fires over a dataset — a label-free score of a layer's features.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..errors import ConfigError, DataError
from ..models.adapter import ModelAdapter
from ..models.layers import BlockLayer, select_layers
from ..registry import param
from ..tensorops import minmax, target_scores
from .base import LAYERS_HELP, PROBES, Probe

Normalize = Literal["minmax", "max", "none"]
SWEEP = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def channel_activations(acts: Tensor, grads: Tensor) -> Tensor:
    """(B,C) `M_k = mean_ij(β_k · B_k)` with Grad-CAM weights `β_k = mean_ij ∂F_m/∂B_k`
    (§3 steps 1–2); as β_k is constant over (i,j) this is exactly `β_k · mean_ij B_k`."""
    return grads.float().mean(dim=(2, 3)) * acts.float().mean(dim=(2, 3))


def normalize_activations(m: Tensor, mode: str) -> Tensor:
    """Per-image normalization of (B,C) channel activations (§3 step 3): `minmax` to [0,1] over
    the C channels (constant → all 0), `max` = divide by the maximum (a maximum ≤ 0 → all 0:
    no channel is positively activated), `none` = unchanged."""
    if mode == "none":
        return m
    hi = m.amax(dim=1, keepdim=True)
    if mode == "max":
        return torch.where(hi > 0, m / hi.clamp_min(torch.finfo(m.dtype).tiny), torch.zeros_like(m))
    if mode == "minmax":
        return minmax(m, dims=(1,))
    raise ConfigError(f"normalize: '{mode}' is not valid. Valid: minmax, max, none")


def purity_from_counts(counts: np.ndarray) -> tuple[float, float]:
    """(purity, entropy in bits) of a firing histogram `h ∈ N^C` (§3 step 5):
    `p = h/Σh`, `H = −Σ p log2 p` (0·log 0 = 0), purity `H / log2 C`. No firing at all, or a
    single channel (H_max = log2 1 = 0), gives purity 0."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    c = counts.size
    if total <= 0 or c < 2:
        return 0.0, 0.0
    p = counts[counts > 0] / total
    entropy = float(-(p * np.log2(p)).sum())
    return entropy / math.log2(c), entropy


@PROBES.register("feature_purity")
@dataclass
class FeaturePurity(Probe):
    """Feature purity per layer (Chen, Cong & Huang, "Convolutional Neural Network Image Feature
    Measurement Based on Information Entropy", Laser & Optoelectronics Progress 2021;
    docs/methods.md §Feature purity).

    One forward and one backward per batch serve every layer: all layers are captured in the
    same pass, the backward of the predicted logits stops at the earliest captured layer (no
    parameter or input gradient), and each layer is reduced at once to its (B,C) channel
    activations, so memory does not grow with the dataset: only the (thresholds × C) firing
    counts are kept. `target` = `prediction` (the paper's `m`, label-free) or `label`.
    """

    layers: str | list[str] = param("auto", help=LAYERS_HELP)
    threshold: float = param(0.5, help="firing threshold τ of the main table, in [0, 1) unless normalize is none")
    sweep: list[float] = param(default_factory=lambda: list(SWEEP), help="τ values of the sweep table")
    normalize: Normalize = param("minmax", help="per-image normalization of the channel activations: minmax, max "
                                                "or none")
    target: Literal["prediction", "label"] = param("prediction", help="class whose gradient weighs the channels: "
                                                                      "prediction (label-free) or label")

    def __post_init__(self) -> None:
        super().__post_init__()
        for t in [self.threshold, *self.sweep]:
            if not 0.0 <= float(t) < 1.0 and self.normalize != "none":
                raise ConfigError(f"threshold {t} must be in [0, 1) for normalize={self.normalize}")

    def thresholds(self) -> list[float]:
        return list(dict.fromkeys([float(self.threshold), *map(float, self.sweep)]))

    def fire_counts(self, model: ModelAdapter, data: Iterable, layers: list[BlockLayer]) -> tuple[dict, int]:
        """{layer: (T,C) int64 counts of images with normalized M_k > τ_t} and the image count."""
        taus = self.thresholds()
        names = [b.name for b in layers]
        counts: dict[str, Tensor] = {}
        n = 0
        for batch in data:
            pixels = batch.images.to(model.device)
            x = model.normalize(pixels)
            with torch.enable_grad(), model.capture(names) as cap:
                logits = model(x)
                target = logits.argmax(1) if self.target == "prediction" else batch.labels.to(logits.device)
                acts = [cap.activations[name] for name in names]
                grads = torch.autograd.grad(target_scores(logits, target).sum(), acts, allow_unused=True)
            tau = torch.tensor(taus, device=x.device).view(-1, 1, 1)
            for name, a, g in zip(names, acts, grads):
                g = torch.zeros_like(a) if g is None else g
                m = normalize_activations(channel_activations(a.detach(), g.detach()), self.normalize)
                fired = (m.unsqueeze(0) > tau).sum(dim=1)  # (T,C)
                counts[name] = counts[name] + fired if name in counts else fired
            n += x.shape[0]
        if n == 0:
            raise DataError("feature_purity: the dataset yielded no images")
        return {k: v.cpu().numpy().astype(np.int64) for k, v in counts.items()}, n

    def __call__(self, model: ModelAdapter, data: Iterable) -> dict[str, pd.DataFrame]:
        layers = select_layers(model, self.layers)
        counts, n = self.fire_counts(model, data, layers)
        taus = self.thresholds()
        rows, sweep_rows, hist_rows = [], [], []
        for order, b in enumerate(layers):
            for t_i, tau in enumerate(taus):
                h = counts[b.name][t_i]
                purity, entropy = purity_from_counts(h)
                row = dict(layer=b.name, order=order, stage=b.stage, channels=b.channels, images=n, tau=tau,
                           purity=purity, entropy_bits=entropy, never_fire=int((h == 0).sum()))
                if tau == float(self.threshold):
                    rows.append(row)
                    hist_rows += [dict(layer=b.name, channel=k, count=int(c)) for k, c in enumerate(h)]
                if tau in [float(s) for s in self.sweep]:
                    sweep_rows.append(row)
        table = pd.DataFrame(rows)
        stages = table[table.stage != ""]
        last = table.iloc[-1]
        summary = pd.DataFrame([
            dict(summary="last_layer", layers=last.layer, tau=float(self.threshold), purity=float(last.purity)),
            dict(summary="stage_mean", layers=" ".join(stages.stage + "=" + stages.layer), tau=float(self.threshold),
                 purity=float(stages.purity.mean()) if len(stages) else float("nan")),
        ])
        out = {"purity": table, "summary": summary, "histogram": pd.DataFrame(hist_rows)}
        if self.sweep:
            out["sweep"] = pd.DataFrame(sweep_rows).sort_values(["order", "tau"]).reset_index(drop=True)
        return out

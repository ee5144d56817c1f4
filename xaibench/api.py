"""The public Python API (DESIGN.md "Python API"): what notebooks, other tools and the CLI call.

Names are registry names (`xai list`); parameters are each plug-in's typed parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from .models.adapter import ModelAdapter
from .models.zoo import load_model as _load_model


def load_model(name: str, weights: str | None = "default", **options: Any) -> ModelAdapter:
    """A zoo model (`torchvision:resnet18`, `builtin:synthetic-cnn`, …) wrapped in a ModelAdapter."""
    return _load_model(name, weights, **options)


def _targets(target: Tensor | int | Sequence[int], n: int, device: torch.device) -> Tensor:
    t = torch.as_tensor(target, dtype=torch.long, device=device)
    return t.expand(n).clone() if t.dim() == 0 else t


def explain(model: ModelAdapter, x: Tensor, target: Tensor | int | Sequence[int], name: str, **params: Any) -> Tensor:
    """(B,H,W) float32 maps of explainer `name` for model-input batch `x` and targets."""
    from .memory import build_sized
    from .saliency import EXPLAINERS

    explainer = build_sized(EXPLAINERS, name, params, model, tuple(x.shape[1:]), backward=True)
    return explainer(model, x, _targets(target, x.shape[0], x.device))


def evaluate(model: ModelAdapter, x: Tensor, maps: Tensor, target: Tensor | int | Sequence[int], name: str,
             annotation: dict[str, Any] | None = None, explain: Any = None, **params: Any):
    """Score `maps` with metric `name` → MetricResult(values (B,), curves (B,T) or None, extras)."""
    from .memory import build_sized
    from .metrics import METRICS

    metric = build_sized(METRICS, name, params, model, tuple(x.shape[1:]), backward=False)
    return metric(model, x, maps, _targets(target, x.shape[0], x.device), annotation=annotation, explain=explain)


def probe(model: ModelAdapter, batches: Iterable[Any], name: str, **params: Any) -> dict[str, Any]:
    """Run model-level probe `name` (feature_purity, neuron_similarity) over batches of images."""
    from .probes import PROBES

    return PROBES.build(name, **params)(model, batches)


def visualize(model: ModelAdapter, targets: Sequence[int], objective: str = "class", steps: int = 256, **params: Any):
    """Activation maximization with pyramid preconditioning (SEED_METHODS.md §5)."""
    from . import featviz

    return featviz.visualize(model, targets, objective=objective, steps=steps, **params)


def run(config: str | Path | dict, overrides: Sequence[str] = (), out: str | Path | None = None,
        resume: bool = False, progress: bool = True) -> Path:
    """Run a benchmark config (YAML path or dict); return the run folder."""
    from .runner import run as _run

    return _run(config, list(overrides), out=out, resume=resume, progress=progress)


def compare(runs: Sequence[str | Path], sort: str | None = None) -> pd.DataFrame:
    """Leaderboard over run folders (or parents of run folders) as a long DataFrame."""
    from .results.compare import leaderboard

    return leaderboard(list(runs), sort)

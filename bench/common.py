"""Shared benchmark helpers: medians over repeats and the floor (the model's own forward or
forward+backward at the same batch size), so every figure is a ratio taken in the same run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from xaibench.models.adapter import ModelAdapter
from xaibench.saliency.base import target_scores


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of `fn()` over `repeats` runs after `warmup` runs (CUDA synchronized)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def forward_floor(model: ModelAdapter, x: torch.Tensor) -> Callable[[], object]:
    """One inference forward of the batch."""

    def fn():
        with torch.inference_mode():
            return model(x)

    return fn


def forward_backward_floor(model: ModelAdapter, x: torch.Tensor, target: torch.Tensor) -> Callable[[], object]:
    """One forward and one backward of the target logits to the input (no parameter gradients)."""

    def fn():
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            return torch.autograd.grad(target_scores(model(xg), target).sum(), xg)

    return fn


def markdown(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in columns) + " |")
    return "\n".join(lines)

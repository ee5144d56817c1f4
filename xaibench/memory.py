"""`chunk_size: auto`: size the inner batches of explainers and metrics from a memory budget —
the free device memory on CUDA, a configurable RAM budget on CPU — and the model's measured
activation memory per image, so a run's peak memory stays bounded.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from .models.adapter import ModelAdapter
from .registry import Registry

ChunkSize = int | Literal["auto"]
DEFAULT_CPU_BUDGET_GB = 2.0
CUDA_FREE_SHARE = 0.5  # of the free device memory, leaving room for the caching allocator
BACKWARD_FACTOR = 3.0  # activations kept for backward + their gradients + temporaries
FORWARD_FACTOR = 1.5  # inference: live activations of two consecutive layers + temporaries
MAX_CHUNK = 4096


def activation_bytes_per_image(model: ModelAdapter, shape: tuple[int, ...]) -> int:
    """Bytes of every leaf module's output for one image of `shape` (C,H,W), measured once per
    shape with forward hooks and cached on the adapter."""
    cache: dict[tuple[int, ...], int] = model.__dict__.setdefault("_activation_bytes", {})
    if shape in cache:
        return cache[shape]
    total = 0

    def hook(mod: nn.Module, inp: Any, out: Any) -> None:
        nonlocal total
        if isinstance(out, Tensor):
            total += out.numel() * out.element_size()

    handles = [m.register_forward_hook(hook) for m in model.module.modules() if not list(m.children())]
    try:
        with torch.no_grad(), model.inference():
            model.module(torch.zeros(1, *shape, device=model.device))
    finally:
        for h in handles:
            h.remove()
    cache[shape] = max(total, int(torch.tensor(shape).prod()) * 4)
    return cache[shape]


def budget_bytes(model: ModelAdapter, budget_gb: float | None = None) -> int:
    """The memory one chunk may use: a share of the free CUDA memory, else `budget_gb` of RAM
    (the config's `memory_budget_gb`; DEFAULT_CPU_BUDGET_GB when None)."""
    device = model.device
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * CUDA_FREE_SHARE)
    return int((budget_gb or DEFAULT_CPU_BUDGET_GB) * 2**30)


def auto_chunk(model: ModelAdapter, shape: tuple[int, ...], backward: bool, extra_bytes: int = 0,
               budget_gb: float | None = None) -> int:
    """How many items fit the budget, each one forward (or forward+backward) of an image of
    `shape` plus `extra_bytes`."""
    per = activation_bytes_per_image(model, shape) * (BACKWARD_FACTOR if backward else FORWARD_FACTOR) + extra_bytes
    return int(max(1, min(MAX_CHUNK, budget_bytes(model, budget_gb) // max(per, 1))))


def resolve_params(params: dict[str, Any], model: ModelAdapter, shape: tuple[int, ...], backward: bool,
                   plugin: type | None = None, budget_gb: float | None = None) -> dict[str, Any]:
    """`params` with `chunk_size: auto` replaced by the number that fits the budget. A `plugin`
    class may define `chunk_item_bytes(self, model, shape)`: the bytes one chunk item needs beyond
    one image's forward(+backward) at `shape`; it is asked on an instance built with `params`."""
    if params.get("chunk_size") != "auto":
        return params
    hook = getattr(plugin, "chunk_item_bytes", None)
    extra = hook(plugin(**{**params, "chunk_size": 1}), model, shape) if hook else 0
    return {**params, "chunk_size": auto_chunk(model, shape, backward, extra, budget_gb)}


def build_sized(registry: Registry, name: str, params: dict[str, Any], model: ModelAdapter, shape: tuple[int, ...],
                backward: bool, budget_gb: float | None = None) -> Any:
    """`registry.build(name, **params)` with `chunk_size: auto` resolved for `model` and images of
    `shape` within `budget_gb`; a plug-in that sizes other work at call time (a `budget_gb`
    attribute, e.g. MSG-CAM's `scale_batch: auto`) is given the budget."""
    params = resolve_params(registry.check(name, params), model, shape, backward, registry.get(name).obj, budget_gb)
    plugin = registry.build(name, **params)
    if hasattr(plugin, "budget_gb"):
        plugin.budget_gb = budget_gb
    return plugin

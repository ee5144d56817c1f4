"""`chunk_size: auto`: size the inner batches of explainers and metrics for speed within a memory
budget — the largest batch that fits the budget (the free device memory on CUDA, a configurable
RAM budget on CPU, and the model's measured activation memory per image), and below it the batch
with the best measured forward throughput (a short timed probe, once per model and input shape).
"""

from __future__ import annotations

import time
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
PROBE_CANDIDATES = (8, 16, 32, 64, 128, 256)  # batch sizes the throughput probe times
PROBE_MAX_SECONDS = 2.0  # a candidate whose forward takes longer ends the probe
PROBE_SLOWER = 1.25  # … and so does one this much slower per image than the best so far
PROBE_ROUNDS = 3  # interleaved rounds, each timing every candidate once; a candidate's fastest round counts
PREFER_LARGER = 1.10  # a smaller batch wins only when more than 10 % faster per image than a larger one


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


def forward_seconds_per_image(model: ModelAdapter, shape: tuple[int, ...], cap: int) -> dict[int, float]:
    """Seconds per image of a no-grad forward (through the fused copy, as the perturbation loops
    run it) at each candidate batch size up to `cap`. The first round warms each candidate up and
    times it (the faster of two forwards), smallest first, ending after a forward longer than PROBE_MAX_SECONDS or PROBE_SLOWER
    times the best per-image time; then PROBE_ROUNDS − 1 more rounds time every candidate again,
    interleaved, so a burst of load on a shared machine hits them alike, and each keeps its fastest
    round (load only ever slows a forward down). Cached per input shape on the adapter (the whole
    table, so plug-ins with smaller caps choose from the same measurements); inputs from a private
    generator, so the global RNG is untouched."""
    cache: dict[tuple[int, ...], dict] = model.__dict__.setdefault("_forward_probe", {})
    probe = cache.setdefault(tuple(shape), {"times": {}, "ended": False})
    known: dict[int, float] = probe["times"]
    counted = model.counter.snapshot()  # the probe's forwards are no method's passes
    gen = torch.Generator().manual_seed(0)
    todo = [c for c in PROBE_CANDIDATES if c <= cap and c not in known]
    timed_now: list[int] = []
    x_all: Tensor | None = None
    with torch.inference_mode(), model.fused_inference():
        for n in todo:
            if probe["ended"]:
                break
            if x_all is None or x_all.shape[0] < n:
                x_all = torch.randn(n, *shape, generator=gen).to(model.device)
            model(x_all[:n])  # warm-up: kernels for this batch size, the fused copy on first use
            took = min(timed_forward(model, x_all[:n]) for _ in range(2))
            known[n] = took / n
            timed_now.append(n)
            probe["ended"] = took > PROBE_MAX_SECONDS or known[n] > PROBE_SLOWER * min(known.values())
        for _ in range(PROBE_ROUNDS - 1):
            for n in timed_now:
                known[n] = min(known[n], timed_forward(model, x_all[:n]) / n)
    for key, value in counted.items():
        setattr(model.counter, key, value)
    return {n: t for n, t in sorted(known.items()) if n <= cap}


def timed_forward(model: ModelAdapter, x: Tensor) -> float:
    cuda = model.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(model.device)
    t0 = time.perf_counter()
    model(x)
    if cuda:
        torch.cuda.synchronize(model.device)
    return time.perf_counter() - t0


def fastest_chunk(model: ModelAdapter, shape: tuple[int, ...], cap: int) -> int:
    """The batch size with the best measured forward throughput that fits `cap` (`cap` itself when
    it is below every candidate): the largest whose time per image is within PREFER_LARGER of the
    fastest, so noise never trades a large batch for a smaller one that is barely faster."""
    times = forward_seconds_per_image(model, shape, cap)
    if not times:
        return cap
    best = min(times.values())
    return max(n for n, t in times.items() if t <= PREFER_LARGER * best)


def resolve_params(params: dict[str, Any], model: ModelAdapter, shape: tuple[int, ...], backward: bool,
                   plugin: type | None = None, budget_gb: float | None = None, speed: bool = True) -> dict[str, Any]:
    """`params` with `chunk_size: auto` replaced by the fastest batch (`fastest_chunk`, when `speed`)
    among those that fit the budget. A `plugin` class may define `chunk_item_bytes(self, model,
    shape)`: the bytes one chunk item needs beyond one image's forward(+backward) at `shape`; it is
    asked on an instance built with `params`."""
    if params.get("chunk_size") != "auto":
        return params
    hook = getattr(plugin, "chunk_item_bytes", None)
    extra = hook(plugin(**{**params, "chunk_size": 1}), model, shape) if hook else 0
    cap = auto_chunk(model, shape, backward, extra, budget_gb)
    return {**params, "chunk_size": fastest_chunk(model, shape, cap) if speed else cap}


def build_sized(registry: Registry, name: str, params: dict[str, Any], model: ModelAdapter, shape: tuple[int, ...],
                backward: bool, budget_gb: float | None = None, speed: bool = True) -> Any:
    """`registry.build(name, **params)` with `chunk_size: auto` resolved for `model` and images of
    `shape` within `budget_gb` (the fastest fitting batch when `speed`, else the largest); a
    plug-in that sizes other work at call time (a `budget_gb` attribute, e.g. MSG-CAM's
    `scale_batch: auto`) is given the budget."""
    params = resolve_params(registry.check(name, params), model, shape, backward, registry.get(name).obj, budget_gb,
                            speed)
    plugin = registry.build(name, **params)
    if hasattr(plugin, "budget_gb"):
        plugin.budget_gb = budget_gb
    return plugin


def auto_chunk_sizes(plugins: list[tuple[str, Registry, list, bool]], model: ModelAdapter, shape: tuple[int, ...],
                     budget_gb: float | None = None) -> dict[str, Any]:
    """For a run's plug-ins ((kind, registry, specs, backward) groups) with `chunk_size: auto`:
    {"chunk_sizes": {"explainer/rise": 64, …}, "chunk_probe": {"3x128x128": {batch: s/image}}}, what
    run.json records (and a resumed run or another rank reuses)."""
    sizes = {}
    for kind, registry, specs, backward in plugins:
        for spec in specs:
            if spec.params.get("chunk_size") == "auto":
                plugin = build_sized(registry, spec.name, spec.params, model, shape, backward, budget_gb)
                sizes[f"{kind}/{spec.key}"] = int(plugin.chunk_size)
    if not sizes:
        return {}
    probe = {"x".join(map(str, k)): {str(n): t for n, t in sorted(v["times"].items())}
             for k, v in model.__dict__.get("_forward_probe", {}).items()}
    return {"chunk_sizes": sizes, "chunk_probe": probe}

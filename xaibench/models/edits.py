"""Every temporary change a method makes to a model, each a context manager that restores the model
on exit (also on error): inference mode, saved parameters, randomized parameters, zeroed filters
or outputs, a layer's output replaced, a forward cut at a layer. (ReLU backward rules: `relu_rules.py`.)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from .adapter import ModelAdapter


@contextlib.contextmanager
def inference_state(module: nn.Module) -> Iterator[nn.Module]:
    """Inside the block every sub-module is in eval mode (BatchNorm statistics, dropout off) and no
    parameter requires grad (forwards build no parameter graph); on exit (also on error) each
    sub-module's train/eval mode and each parameter's `requires_grad` flag are what they were."""
    modes = [(m, m.training) for m in module.modules()]
    flags = [(p, p.requires_grad) for p in module.parameters()]
    try:
        for m, _ in modes:
            m.training = False
        for p, _ in flags:
            p.requires_grad_(False)
        yield module
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in flags:
            p.requires_grad_(flag)


@contextlib.contextmanager
def preserved_state(module: nn.Module) -> Iterator[nn.Module]:
    """Inside the block the module's parameters and buffers may be changed in place; on exit
    (also on error) every one of them is copied back bit for bit."""
    live = module.state_dict(keep_vars=True)
    saved = {k: v.detach().clone() for k, v in live.items()}
    try:
        yield module
    finally:
        with torch.no_grad():
            for k, v in live.items():
                v.copy_(saved[k])


def reinitialize(module: nn.Module, seed: int) -> None:
    """Give every parameter of `module` a fresh draw (`randomize_parameters` of all of them), with a
    seeded RNG that leaves the global one alone. Use inside `preserved_state`."""
    randomize_parameters(module, [n for n, _ in module.named_parameters()], seed)


def own_init(sub: nn.Module):
    """The module's own initializer of its parameters, or None: `reset_parameters` (PyTorch layers),
    `_reset_parameters` (`nn.MultiheadAttention`'s in-projections), PyTorch's defaults by class name
    for a TorchScript module."""
    for name in ("reset_parameters", "_reset_parameters"):
        fn = getattr(sub, name, None)
        if callable(fn) and not isinstance(sub, torch.jit.ScriptModule):
            return fn
    if isinstance(sub, torch.jit.ScriptModule) and getattr(sub, "original_name", "").startswith(COMPILED_KINDS):
        return lambda: reset_compiled(sub)
    return None


def randomize_parameters(module: nn.Module, names, seed: int) -> None:
    """Draw the parameters `names` (as in `module.named_parameters()`) afresh (Adebayo et al.,
    "Sanity Checks for Saliency Maps", NeurIPS 2018): a parameter owned by a module with its own
    initializer (`own_init`) gets that initializer's draw (BatchNorm statistics reset with it); any
    other (ViT class token and position embedding, layer scales, bias tables) a normal draw
    N(0, rms²) with rms its current root mean square. The initializer's draws of parameters not in
    `names` are undone, so only `names` change. Seeded; the global RNG is left alone. Use inside
    `preserved_state` (or `randomized`)."""
    wanted = set(names)
    known = dict(module.named_parameters())
    unknown = wanted - set(known)
    if unknown:
        raise KeyError(f"not parameters of the module: {', '.join(sorted(unknown))}")
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(int(seed))
        for prefix, sub in module.named_modules():
            dot = f"{prefix}." if prefix else ""
            mine = [n for n, _ in sub.named_parameters(recurse=False) if dot + n in wanted]
            if not mine:
                continue
            init = own_init(sub)
            if init is None:
                for n in mine:
                    p = getattr(sub, n)
                    p.normal_(0.0, float(p.detach().double().pow(2).mean().sqrt()))
                continue
            keep = {n: p.detach().clone() for n, p in sub.named_parameters() if n not in mine}
            init()
            params = dict(sub.named_parameters())
            for n, value in keep.items():
                params[n].copy_(value)


@contextlib.contextmanager
def randomized(module: nn.Module, names, seed: int) -> Iterator[nn.Module]:
    """Inside the block the parameters `names` are freshly drawn (`randomize_parameters`); on exit
    (also on error) every parameter and buffer is what it was, bit for bit."""
    with preserved_state(module):
        randomize_parameters(module, names, seed)
        yield module


COMPILED_KINDS = ("Conv", "Linear", "BatchNorm", "LayerNorm", "GroupNorm", "InstanceNorm")


def reset_compiled(sub: torch.jit.ScriptModule) -> None:
    """PyTorch's default initializers for a TorchScript module, which has no `reset_parameters`:
    convolutions and linear layers (Kaiming-uniform weights, bias uniform in ±1/√fan_in), norm layers
    (weight 1, bias 0, running statistics reset), read from the module's original class name."""
    kind = getattr(sub, "original_name", "")
    params = dict(sub.named_parameters(recurse=False))
    buffers = dict(sub.named_buffers(recurse=False))
    weight, bias = params.get("weight"), params.get("bias")
    if kind.startswith(("Conv", "Linear")) and weight is not None:
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        if bias is not None:
            fan_in = weight[0].numel()
            nn.init.uniform_(bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
    elif kind.startswith(("BatchNorm", "LayerNorm", "GroupNorm", "InstanceNorm")):
        if weight is not None:
            nn.init.ones_(weight)
        if bias is not None:
            nn.init.zeros_(bias)
        for name, buf in buffers.items():
            buf.fill_(1 if name == "running_var" else 0)


@contextlib.contextmanager
def zeroed_filters(conv: nn.Conv2d, bn: nn.Module | None, channels: Tensor) -> Iterator[None]:
    """Zero output channels `channels` of `conv` (weight rows and bias) and of the following
    BatchNorm's affine weight and bias; the exact saved values are copied back on exit, so the
    parameters end bit-identical. In place on the parameters, so their version counters move."""
    params = [p for p in (conv.weight, conv.bias) if p is not None]
    if bn is not None:
        params += [p for p in (getattr(bn, "weight", None), getattr(bn, "bias", None)) if p is not None]
    idx = channels.to(conv.weight.device, torch.long)
    saved = [p.detach().index_select(0, idx) for p in params]
    try:
        with torch.no_grad():
            for p in params:
                p.index_fill_(0, idx, 0.0)
        yield
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.index_copy_(0, idx, s)


@contextlib.contextmanager
def zeroed_outputs(model: ModelAdapter, layer: str, channels: Tensor) -> Iterator[None]:
    """Zero output channels `channels` of `layer` with a forward hook (removed on exit); of a token
    layer, the channels of its (B,C,h,w) patch map (prefix tokens kept), as `capture` shows it."""
    with model.watch_input() as seen:
        def hook(mod, inp, out):
            layout = model.layout(layer, out, seen[0])
            fmap = out if layout is None else layout.to_grid(out)
            keep = torch.ones(fmap.shape[1], device=out.device, dtype=out.dtype)
            keep[channels.to(out.device)] = 0
            fmap = fmap * keep.view(1, -1, *([1] * (fmap.dim() - 2)))
            return fmap if layout is None else layout.from_grid(fmap, layout.prefix_of(out))

        handle = model.module_of(layer).register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()


@contextlib.contextmanager
def replaced_output(model: ModelAdapter, layer: str, acts: Tensor, prefix: Tensor | None = None) -> Iterator[None]:
    """Inside the block `layer` outputs `acts` whatever its input (whose batch may be smaller:
    the layers after it only see `acts`); the hook is removed on exit. `acts` is (B,C,h,w) as
    `capture` records it: for a token layer it is turned back into the layer's tokens, with
    `prefix` (B,p,C) — the captured class/distillation/register tokens — in front."""
    with model.watch_input() as seen:
        def hook(mod, inp, out):
            layout = model.layout(layer, out, seen[0]) if isinstance(out, Tensor) else None
            return acts if layout is None else layout.from_grid(acts, prefix)

        handle = model.module_of(layer).register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()


class _StopForward(Exception):
    """Raised by a forward hook once the deepest needed layer has run."""


def forward_to(model: ModelAdapter, x: Tensor, layer: str) -> Tensor:
    """Run the model only up to `layer` and return its output — a token layer's as the (B,C,h,w)
    map of its patch grid, like `capture` — the rest is skipped (exact for a gradient that starts
    at this layer: later layers cannot change it). Counted as a forward."""
    box: dict[str, Tensor] = {}

    def hook(mod, inp, out):
        layout = model.layout(layer, out, x.shape[-2:]) if isinstance(out, Tensor) else None
        box["out"] = out if layout is None else layout.to_grid(out)
        raise _StopForward

    handle = model.module_of(layer).register_forward_hook(hook)
    try:
        with model.inference():
            model.module(x)
    except _StopForward:
        pass
    finally:
        handle.remove()
    model.count_passes(forward_images=x.shape[0])
    return box["out"]

"""Layer capture: a layer's output (and, after a backward, its gradient) recorded during forwards,
token layers of vision transformers as the (B,C,h,w) map of their patch grid.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..errors import LayerError

if TYPE_CHECKING:
    from .adapter import ModelAdapter


@dataclass
class Capture:
    """What `ModelAdapter.capture` recorded: the last activation of each layer (a graph leaf that
    requires grad when autograd is on, so a backward can stop there), as (B,C,h,w) for a token
    layer, whose prefix tokens (B,p,C) are kept apart in `prefix`."""

    layers: list[str]
    activations: dict[str, Tensor] = field(default_factory=dict)
    prefix: dict[str, Tensor] = field(default_factory=dict)  # a token layer's class/distillation/register tokens

    @property
    def activation(self) -> Tensor:
        return self.activations[self.layers[0]]


@contextlib.contextmanager
def capture_layers(model: ModelAdapter, names: list[str], as_grid: bool = True) -> Iterator[Capture]:
    """Record the output of each layer `names` during the forwards inside the block, and its
    gradient after a backward (the model continues with a copy of the recorded output, so
    in-place ops after the layer leave the record intact). When autograd is on and the
    output does not require grad (frozen parameters, input without grad), it is made a graph
    leaf, so gradients can stop at the layer without any parameter gradient. A token layer
    ((B,N,C) with prefix tokens, or (B,h,w,C) channels-last) is recorded as the (B,C,h,w) map
    of its patch grid (`ModelAdapter.layout`) and the model continues from that map, so gradients
    arrive in (B,C,h,w) too; `as_grid=False` records the raw output. Hooks are always removed."""
    cap = Capture(names)
    with contextlib.ExitStack() as stack:
        seen = stack.enter_context(model.watch_input())
        for n in dict.fromkeys(names):
            def hook(mod, inp, out, n=n):
                if not isinstance(out, Tensor):
                    raise LayerError(f"layer '{n}' does not output a tensor; choose another layer")
                if torch.is_grad_enabled() and not out.requires_grad:
                    out = out.detach().requires_grad_(True)
                layout = model.layout(n, out, seen[0]) if as_grid else None
                if layout is None:
                    cap.activations[n] = out if out.requires_grad else out.contiguous()  # NCHW for the explainers
                    # the model goes on with a copy: an in-place op after the layer (DenseNet's
                    # relu(features, inplace=True)) neither alters the record nor hits a grad leaf
                    return out.clone()
                grid = layout.to_grid(out)  # a view: the backward reaches `out` through it
                grid = grid if grid.requires_grad else grid.contiguous()
                cap.activations[n] = grid
                prefix = layout.prefix_of(out)
                if prefix is not None:
                    cap.prefix[n] = prefix.detach()
                return layout.from_grid(grid, prefix)  # the model goes on from the recorded map
            stack.callback(model.module_of(n).register_forward_hook(hook).remove)
        yield cap

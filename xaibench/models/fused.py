"""A BatchNorm-folded copy of a model for the no-grad CPU forwards of perturbation loops
(Score-CAM, RISE, occlusion, deletion/insertion, …): rebuilt when the parameters change.

The copy is made with torch.fx (symbolic tracing; `torch.fx.experimental.optimization.fuse` folds
each eval-mode BatchNorm that alone reads a convolution's or linear layer's output into it), ReLUs
whose input has no other reader run in place, and it runs in eager mode, channels-last. It computes
the same function; only the rounding of the float arithmetic differs (~1e-6 relative). A model
that cannot be traced, or whose copy disagrees with it on a check batch, runs as is.
(TorchScript's freeze/optimize_for_inference did this before; PyTorch deprecated it, and
bench/bench_fused.py measures both.)
"""

from __future__ import annotations

import copy
import operator
import warnings

import torch
from torch import Tensor, nn

_INT_OF_SIZE = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def state_key(module: nn.Module) -> tuple:
    """A fingerprint of every parameter and buffer: where it lives, its in-place version counter,
    and the integer sum of its bit patterns — so it changes when a tensor is replaced, moved,
    modified in place, or modified through `.data` (which bypasses the version counter). One read
    of the weights (~1 ms per 10 M parameters), far below a forward of the batch it guards."""
    tensors = [t.detach() for t in (*module.parameters(), *module.buffers())]
    if not tensors:
        return ()
    sums = []
    for t in tensors:
        flat = t.reshape(-1)
        try:
            bits = flat.view(_INT_OF_SIZE.get(t.element_size(), torch.uint8))
        except RuntimeError:  # e.g. quantized tensors: location and version only
            sums.append(torch.zeros((), dtype=torch.int64, device=t.device))
            continue
        sums.append(bits.sum(dtype=torch.int64))
    checks = torch.stack([s.cpu() for s in sums]).tolist()
    return tuple((t.data_ptr(), t._version, c) for t, c in zip(tensors, checks))


def has_hooks(module: nn.Module) -> bool:
    """True when a forward hook is attached anywhere (the copy would skip it)."""
    from torch.nn.modules import module as module_globals

    if module_globals._global_forward_hooks or module_globals._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())


def relu_in_place(graph_module: torch.fx.GraphModule) -> None:
    """Make every ReLU whose input is read by nothing else an in-place ReLU (no new tensor)."""
    modules = dict(graph_module.named_modules())
    graph = graph_module.graph
    for node in list(graph.nodes):
        is_relu = (node.op == "call_module" and type(modules.get(node.target)) is nn.ReLU) or \
            (node.op == "call_function" and node.target in (torch.relu, torch.nn.functional.relu))
        if not is_relu or not node.args or not isinstance(node.args[0], torch.fx.Node):
            continue
        src = node.args[0]
        if len(src.users) != 1 or src.op in ("placeholder", "get_attr") or src.target in (operator.getitem,):
            continue
        with graph.inserting_after(node):
            new = graph.call_function(torch.relu_, (src,))
        node.replace_all_uses_with(new)
        graph.erase_node(node)
    graph.lint()
    graph_module.recompile()


def fold_for_inference(module: nn.Module, image: Tensor) -> nn.Module | None:
    """The traced, BatchNorm-folded, channels-last copy of `module` (checked against the module
    on three copies of `image` (1,C,H,W)), or None when tracing fails or the check disagrees."""
    from torch.fx.experimental.optimization import fuse

    check = image.expand(3, *image.shape[1:]).contiguous()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            folded = fuse(copy.deepcopy(module).eval(), inplace=True)
            relu_in_place(folded)
            if check.dim() == 4:
                folded = folded.to(memory_format=torch.channels_last)
                check_in = check.contiguous(memory_format=torch.channels_last)
            else:
                check_in = check
            for p in folded.parameters():
                p.requires_grad_(False)
            want, got = module(check), folded(check_in)
    except Exception:  # noqa: BLE001 - any model torch.fx cannot trace runs unfused
        return None
    if not (isinstance(got, Tensor) and isinstance(want, Tensor) and got.shape == want.shape):
        return None
    scale = float(want.abs().max()) or 1.0
    return folded if torch.allclose(got, want, rtol=1e-4, atol=1e-5 * scale) else None


class FusedInference:
    """Holds the folded copy of one module. `module_for(x)` returns the copy valid for the current
    parameters, built on first use (always, never only after some calls: a logit must not depend
    on which forward came first, or a resumed or sharded run would differ from a single one), or
    None under autocast, when hooks are attached, or when the model cannot be traced."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.enabled = True
        self._key: tuple | None = None
        self._folded: nn.Module | None = None

    def module_for(self, x: Tensor) -> nn.Module | None:
        if not self.enabled or torch.is_autocast_enabled(x.device.type) or has_hooks(self.module):
            return None  # autocast and hooks are for the model as it is
        key = (state_key(self.module), x.dtype)
        if key == self._key:
            return self._folded
        self._key, self._folded = key, fold_for_inference(self.module, x[:1])
        self.enabled = self._folded is not None  # a model that cannot be traced is not retried
        return self._folded

    def forward(self, x: Tensor) -> Tensor | None:
        """Logits of `x` through the copy (channels-last for images), or None when it is not used."""
        folded = self.module_for(x)
        if folded is None:
            return None
        return folded(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x)

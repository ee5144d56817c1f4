"""Temporary backward rules for every ReLU of a model: guided backprop and deconvnet.

Context managers: forward values are unchanged, only the ReLU's backward is replaced; the model
is restored on exit (also on error), and never edited permanently.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ..errors import ModelError

# ---------------------------------------------------------------------------- the rule


class _ReLURule(torch.autograd.Function):
    """ReLU (or ReLU6 with `upper` = 6) forward, out of place or in place; backward by `rule`:
    `guided` passes the gradient only where the output is inside (0, upper) and the gradient > 0
    (guided backpropagation, Springenberg et al., ICLR-W 2015); `deconvnet` passes only the
    positive gradient, whatever the forward input (Zeiler & Fergus, ECCV 2014)."""

    @staticmethod
    def forward(ctx, x: Tensor, rule: str, upper: float | None, inplace: bool) -> Tensor:
        y = x.clamp_(0, upper) if inplace else x.clamp(0, upper)
        if inplace:
            ctx.mark_dirty(x)
        ctx.rule, ctx.upper = rule, upper
        if rule == "guided":
            ctx.save_for_backward(y)  # y > 0 exactly where x > 0
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        out = grad.clamp(min=0)
        if ctx.rule == "guided":
            (y,) = ctx.saved_tensors
            live = y > 0 if ctx.upper is None else (y > 0) & (y < ctx.upper)
            out = out * live.to(grad.dtype)
        return out, None, None, None


# ---------------------------------------------------------------------------- functional relu calls

_OUT_OF_PLACE = {torch.relu, F.relu, Tensor.relu}
_IN_PLACE = {torch.relu_, F.relu_, Tensor.relu_}


class _ReLURuleMode(TorchFunctionMode):
    """Routes `torch.relu`, `F.relu`, `Tensor.relu` (and their in-place forms) through a rule."""

    def __init__(self, rule: str):
        super().__init__()
        self.rule = rule

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _OUT_OF_PLACE or func in _IN_PLACE:
            x = args[0] if args else kwargs.get("input", kwargs.get("self"))
            inplace = func in _IN_PLACE or (func is F.relu and bool(kwargs.get("inplace", args[1:2] == (True,))))
            if isinstance(x, Tensor) and torch.is_grad_enabled() and x.requires_grad:
                return _ReLURule.apply(x, self.rule, None, inplace)
        return func(*args, **kwargs)


# ---------------------------------------------------------------------------- nn.ReLU modules

_active = threading.local()


def _root(model_or_module: nn.Module, kind: str) -> nn.Module:
    if not isinstance(model_or_module, nn.Module):
        raise ModelError(f"a ReLU rule needs an nn.Module or ModelAdapter, got {type(model_or_module).__name__}")
    if hasattr(model_or_module, "require_hooks"):  # a ModelAdapter
        model_or_module.require_hooks(f"the {kind} ReLU rule")
    elif isinstance(model_or_module, torch.jit.ScriptModule):
        raise ModelError(f"the {kind} ReLU rule needs Python modules; a TorchScript module runs compiled code")
    return model_or_module


@contextlib.contextmanager
def relu_rule(model_or_module: nn.Module, kind: str) -> Iterator[nn.Module]:
    """Inside the block every ReLU of the model back-propagates with rule `kind` (`guided` or
    `deconvnet`, see `_ReLURule`); forward values are unchanged; hooks and the mode are removed on exit."""
    root = _root(model_or_module, kind)
    if getattr(_active, "kind", None) is not None:
        raise ModelError(f"cannot apply the {kind} ReLU rule inside the {_active.kind} rule: they do not nest")
    handles = []
    for module in root.modules():
        if not isinstance(module, (nn.ReLU, nn.ReLU6)):
            continue
        six = isinstance(module, nn.ReLU6)
        stash: list[Tensor] = []

        def pre_hook(mod, args, stash=stash):
            # The module runs on a detached alias, so its own ReLU backward never enters the graph.
            stash.append(args[0])
            return (args[0].detach(),) + tuple(args[1:])

        def post_hook(mod, args, out, stash=stash, six=six):
            x = stash.pop()
            if six:  # ReLU6 is idempotent on its own output, so an in-place alias needs no special case
                return _ReLURule.apply(x, kind, 6.0, False)
            # in place: values already clamped through the alias; the rule rebases the history
            return _ReLURule.apply(x, kind, None, bool(getattr(mod, "inplace", False)))

        handles.append(module.register_forward_pre_hook(pre_hook))
        handles.append(module.register_forward_hook(post_hook))
    _active.kind = kind
    mode = _ReLURuleMode(kind)
    try:
        with mode:
            yield model_or_module
    finally:
        _active.kind = None
        for h in handles:
            h.remove()


def guided_relu(model_or_module: nn.Module) -> contextlib.AbstractContextManager[nn.Module]:
    """Inside the block every ReLU of the model (nn.ReLU modules, in-place ones, and functional
    `torch.relu`/`F.relu`/`Tensor.relu` calls) back-propagates with the guided-backprop rule
    (Springenberg et al., "Striving for Simplicity", ICLR-W 2015): the gradient passes only where
    the forward input > 0 and the incoming gradient > 0. Forward values are unchanged; hooks and
    the function mode are removed on exit."""
    return relu_rule(model_or_module, "guided")


def deconvnet_relu(model_or_module: nn.Module) -> contextlib.AbstractContextManager[nn.Module]:
    """Inside the block every ReLU of the model back-propagates with the deconvnet rule (Zeiler &
    Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014): only the positive
    incoming gradient passes, whatever the forward input. Forward values are unchanged; hooks
    and the function mode are removed on exit."""
    return relu_rule(model_or_module, "deconvnet")

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

# ---------------------------------------------------------------------------- the rules


class _GuidedReLU(torch.autograd.Function):
    """ReLU forward; backward passes the gradient only where input > 0 and gradient > 0
    (guided backpropagation, Springenberg et al., ICLR-W 2015)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        y = x.clamp(min=0)
        ctx.save_for_backward(y)  # y > 0 exactly where x > 0
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return grad.clamp(min=0) * (y > 0).to(grad.dtype)


class _GuidedReLUInplace(torch.autograd.Function):
    """In-place variant of `_GuidedReLU` (for `nn.ReLU(inplace=True)` and `relu_`)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x.clamp_(min=0)
        ctx.mark_dirty(x)
        ctx.save_for_backward(x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return grad.clamp(min=0) * (y > 0).to(grad.dtype)


class _DeconvReLU(torch.autograd.Function):
    """ReLU forward; backward passes only the positive gradient, whatever the forward input
    was (deconvnet, Zeiler & Fergus, ECCV 2014)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad.clamp(min=0)


class _DeconvReLUInplace(torch.autograd.Function):
    """In-place variant of `_DeconvReLU`."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x.clamp_(min=0)
        ctx.mark_dirty(x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad.clamp(min=0)


class _GuidedReLU6(torch.autograd.Function):
    """ReLU6 forward; guided backward: the gradient passes where 0 < input < 6 and gradient > 0."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        y = x.clamp(0, 6)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return grad.clamp(min=0) * ((y > 0) & (y < 6)).to(grad.dtype)


class _DeconvReLU6(torch.autograd.Function):
    """ReLU6 forward; deconvnet backward: only the positive gradient, whatever the input."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.clamp(0, 6)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad.clamp(min=0)


_RULES6 = {"guided": _GuidedReLU6, "deconvnet": _DeconvReLU6}

_RULES = {
    "guided": (_GuidedReLU, _GuidedReLUInplace),
    "deconvnet": (_DeconvReLU, _DeconvReLUInplace),
}

# ---------------------------------------------------------------------------- functional relu calls

_OUT_OF_PLACE = {torch.relu, F.relu, Tensor.relu}
_IN_PLACE = {torch.relu_, F.relu_, Tensor.relu_}


class _ReLURuleMode(TorchFunctionMode):
    """Routes `torch.relu`, `F.relu`, `Tensor.relu` (and their in-place forms) through a rule."""

    def __init__(self, rule: type[torch.autograd.Function], rule_inplace: type[torch.autograd.Function]):
        super().__init__()
        self.rule, self.rule_inplace = rule, rule_inplace

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _OUT_OF_PLACE or func in _IN_PLACE:
            x = args[0] if args else kwargs.get("input", kwargs.get("self"))
            inplace = func in _IN_PLACE or (func is F.relu and bool(kwargs.get("inplace", args[1:2] == (True,))))
            if isinstance(x, Tensor) and torch.is_grad_enabled() and x.requires_grad:
                return (self.rule_inplace if inplace else self.rule).apply(x)
        return func(*args, **kwargs)


# ---------------------------------------------------------------------------- nn.ReLU modules

_active = threading.local()


def _root(model_or_module: nn.Module) -> nn.Module:
    if not isinstance(model_or_module, nn.Module):
        raise ModelError(f"a ReLU rule needs an nn.Module or ModelAdapter, got {type(model_or_module).__name__}")
    return model_or_module


@contextlib.contextmanager
def _relu_rule(model_or_module: nn.Module, kind: str) -> Iterator[nn.Module]:
    root = _root(model_or_module)
    if getattr(_active, "kind", None) is not None:
        raise ModelError(f"cannot apply the {kind} ReLU rule inside the {_active.kind} rule: they do not nest")
    rule, rule_inplace = _RULES[kind]
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
                return _RULES6[kind].apply(x)
            if getattr(mod, "inplace", False):
                return rule_inplace.apply(x)  # values already clamped through the alias; history rebased
            return rule.apply(x)

        handles.append(module.register_forward_pre_hook(pre_hook))
        handles.append(module.register_forward_hook(post_hook))
    _active.kind = kind
    mode = _ReLURuleMode(rule, rule_inplace)
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
    return _relu_rule(model_or_module, "guided")


def deconvnet_relu(model_or_module: nn.Module) -> contextlib.AbstractContextManager[nn.Module]:
    """Inside the block every ReLU of the model back-propagates with the deconvnet rule (Zeiler &
    Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014): only the positive
    incoming gradient passes, whatever the forward input. Forward values are unchanged; hooks
    and the function mode are removed on exit."""
    return _relu_rule(model_or_module, "deconvnet")

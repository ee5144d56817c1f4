"""A frozen, BatchNorm-folded copy of a model for the no-grad CPU forwards of perturbation loops
(Score-CAM, RISE, occlusion, deletion/insertion, …): rebuilt when the parameters change.

Folding eval-mode BatchNorm into the preceding convolution and fusing conv + ReLU/add (TorchScript's
`freeze` + `optimize_for_inference`, oneDNN) computes the same function; only the rounding of the
float arithmetic differs (~1e-6 relative). A copy that cannot be traced, or whose logits differ
from the model's on a check batch of another size, is never used (the model runs as is).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import torch
from torch import Tensor, nn


def state_key(module: nn.Module) -> tuple[tuple[int, int], ...]:
    """Where each parameter and buffer lives and its in-place version counter: changes whenever a
    tensor is replaced, moved, or modified in place (not through `.data`)."""
    tensors: Iterable[Tensor] = (*module.parameters(), *module.buffers())
    return tuple((t.data_ptr(), t._version) for t in tensors)


def has_hooks(module: nn.Module) -> bool:
    """True when a forward hook is attached anywhere (a traced copy would skip it)."""
    from torch.nn.modules import module as module_globals

    if module_globals._global_forward_hooks or module_globals._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())


def freeze_for_inference(module: nn.Module, image: Tensor) -> torch.jit.ScriptModule | None:
    """The traced, frozen and folded copy of `module` (traced on two copies of `image` (1,C,H,W)
    and checked on three), or None when tracing fails or the check disagrees."""
    example = image.expand(2, *image.shape[1:]).contiguous()
    check = image.expand(3, *image.shape[1:]).contiguous()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(module, example, check_trace=False)
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
            want, got = module(check), frozen(check)
    except Exception:  # noqa: BLE001 - any model TorchScript cannot take runs unfused
        return None
    if not (isinstance(got, Tensor) and isinstance(want, Tensor) and got.shape == want.shape):
        return None
    scale = float(want.abs().max()) or 1.0
    return frozen if torch.allclose(got, want, rtol=1e-4, atol=1e-5 * scale) else None


class FusedInference:
    """Holds the folded copy of one module. `module_for(x)` returns the copy valid for the current
    parameters and input shape, built on first use (always, never only after some calls: a logit
    must not depend on which forward came first, or a resumed or sharded run would differ from a
    single one), or None under autocast, when hooks are attached, or when the model cannot be
    traced."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.enabled = True
        self._key: tuple | None = None
        self._frozen: torch.jit.ScriptModule | None = None

    def module_for(self, x: Tensor) -> torch.jit.ScriptModule | None:
        if not self.enabled or torch.is_autocast_enabled(x.device.type) or has_hooks(self.module):
            return None  # autocast and hooks are for the model as it is
        key = (state_key(self.module), x.shape[1:], x.dtype)
        if key == self._key:
            return self._frozen
        self._key, self._frozen = key, freeze_for_inference(self.module, x[:1])
        self.enabled = self._frozen is not None  # a model that cannot be traced is not retried
        return self._frozen

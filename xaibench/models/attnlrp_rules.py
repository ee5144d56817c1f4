"""AttnLRP's rules (Achtibat et al., ICML 2024) as temporary forwards of a vision transformer's modules,
in the gradient × input formulation: inside the context the input gradient times the input is the relevance.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from .attention import require_attention, timm_forward, torchvision_forward
from .lrp_rules import relevance_rules

TIMM_ELEMENTWISE = ("GELU", "GELUTanh", "QuickGELU", "SiLU", "Swish")


class _IdentityRule(torch.autograd.Function):
    """y = f(x) forward; backward g·f(x)/x, so x·∂ = f(x)·g: the relevance passes unchanged (AttnLRP's
    identity rule for element-wise non-linearities, Eq. 9)."""

    @staticmethod
    def forward(ctx, x: Tensor, fn) -> Tensor:
        out = fn(x)
        ctx.save_for_backward(torch.where(x == 0, torch.zeros_like(out), out / x))
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        (ratio,) = ctx.saved_tensors
        return grad * ratio, None


def identity_rule_forward(module: nn.Module):
    original = type(module).forward.__get__(module)

    def forward(x: Tensor) -> Tensor:
        return _IdentityRule.apply(x, original) if torch.is_grad_enabled() and x.requires_grad else original(x)

    return forward


def layer_norm_forward(norm: nn.LayerNorm):
    """LayerNorm with its standard deviation held constant in the backward: the centring and the
    affine map are linear (ε-rule), the division is the identity rule (AttnLRP §3.3.2)."""

    def forward(x: Tensor) -> Tensor:
        dims = tuple(range(-len(norm.normalized_shape), 0))
        centred = x - x.mean(dims, keepdim=True)
        std = (centred.pow(2).mean(dims, keepdim=True) + norm.eps).sqrt()
        y = centred / std.detach()
        if norm.weight is not None:
            y = y * norm.weight
        return y + norm.bias if norm.bias is not None else y

    return forward


def is_elementwise_activation(m: nn.Module) -> bool:
    return isinstance(m, (nn.GELU, nn.SiLU, nn.Mish, nn.Tanh)) or (
        type(m).__module__.startswith("timm") and type(m).__name__ in TIMM_ELEMENTWISE)


@contextlib.contextmanager
def attnlrp_rules(module: nn.Module, record: Callable[[Tensor], None] | None = None) -> Iterator[None]:
    """Inside the block the input gradient of any output times the input is its AttnLRP relevance:
    attention as explicit softmax(q·kᵀ)·v with each product's gradient split 0.5/0.5 (uniform rule)
    and the softmax's own gradient (× input it is the softmax rule, Prop. 3.1), LayerNorm with a
    constant standard deviation, element-wise activations (GELU) by the identity rule; linear layers
    and residual sums keep their gradient (× input: the ε-rule with ε → 0). Every module gets its own
    forward back on exit, also on error. `record` receives each softmax's output (before its half of
    A·v's relevance arrives), e.g. to account for the relevance the softmax rule absorbs."""
    forwards = {}
    for site in require_attention(module, "attnlrp"):
        fn = torchvision_forward if isinstance(site.attention, nn.MultiheadAttention) else timm_forward
        forwards[site.attention] = fn(site.attention, record, True)
    for m in module.modules():
        if isinstance(m, nn.LayerNorm):
            forwards[m] = layer_norm_forward(m)
        elif is_elementwise_activation(m):
            forwards[m] = identity_rule_forward(m)
    with relevance_rules(forwards):
        yield


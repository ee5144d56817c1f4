"""Self-attention of vision transformers made observable: a context manager that runs each attention
module with an explicit softmax and records its probabilities (differentiable), restoring the model on exit.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ModelError
from .lrp_rules import relevance_rules


@functools.cache
def _timm_attention() -> type | None:
    try:
        from timm.layers.attention import Attention
    except ImportError:
        return None
    return Attention


def is_timm_attention(m: nn.Module) -> bool:
    """timm's standard `Attention` (ViT, DeiT, …): qkv projection, `fused_attn` switch, `attn_drop`."""
    return type(m) is _timm_attention()


def has_self_attention(module: nn.Module) -> bool:
    """True when any sub-module is a self-attention module `attention_sites` knows (one walk, no names)."""
    return any(isinstance(m, nn.MultiheadAttention) or is_timm_attention(m) for m in module.modules())


@dataclass(frozen=True)
class AttentionSite:
    """One self-attention module of a transformer and the block (its parent) whose output is tokens."""

    name: str
    block: nn.Module
    attention: nn.Module


def attention_sites(module: nn.Module) -> list[AttentionSite]:
    """Every self-attention module in registration (= forward) order: torchvision's
    `nn.MultiheadAttention` (EncoderBlock.self_attention) and timm's `Attention` (Block.attn)."""
    modules = dict(module.named_modules())
    sites = []
    for name, m in modules.items():
        if isinstance(m, nn.MultiheadAttention) or is_timm_attention(m):
            parent = modules[name.rsplit(".", 1)[0]] if "." in name else module
            sites.append(AttentionSite(name, parent, m))
    return sites


def require_attention(module: nn.Module, what: str) -> list[AttentionSite]:
    """The model's attention sites, or a ModelError saying `what` needs a vision transformer."""
    sites = attention_sites(module)
    if not sites:
        raise ModelError(
            f"{what} needs a vision transformer (torchvision VisionTransformer or timm ViT/DeiT: self-attention "
            "modules nn.MultiheadAttention or timm Attention), but this model has none; use a CAM, gradient or "
            "perturbation explainer (`xai list explainers --model M` lists those that apply)"
        )
    return sites


# ---------------------------------------------------------------------------- explicit self-attention


def halve_gradient(t: Tensor, factor: float = 2.0) -> Tensor:
    """`t` in the forward; the gradient arriving at it divided by `factor` in the backward (AttnLRP's
    uniform rule for a product of two inputs, in the gradient × input formulation)."""
    return _ScaleGradient.apply(t, factor)


class _ScaleGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t: Tensor, factor: float) -> Tensor:
        ctx.factor = factor
        return t.view_as(t)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad / ctx.factor, None


def scaled_attention(q: Tensor, k: Tensor, v: Tensor, scale: float, record: Callable[[Tensor], None] | None,
                     uniform_rule: bool) -> Tensor:
    """softmax(q·kᵀ·scale)·v with the probabilities handed to `record`; with `uniform_rule` each
    product's two inputs get half the gradient (AttnLRP, Achtibat et al. 2024, Eq. 7)."""
    if uniform_rule:
        q, k, v = halve_gradient(q), halve_gradient(k), halve_gradient(v)
    probs = (q * scale).matmul(k.transpose(-2, -1)).softmax(-1)
    if record is not None:
        record(probs)
    if uniform_rule:
        probs = halve_gradient(probs)
    return probs.matmul(v)


def torchvision_forward(mha: nn.MultiheadAttention, record, uniform_rule: bool) -> Callable[..., tuple]:
    """A forward for `nn.MultiheadAttention` computing self-attention explicitly (the same
    function as PyTorch's, up to rounding) with the same signature and return value."""
    if not mha.batch_first or not mha._qkv_same_embed_dim or mha.bias_k is not None or mha.add_zero_attn:
        raise ModelError("attention explainers support batch-first nn.MultiheadAttention with one shared "
                         "q/k/v projection and no added key/value bias (torchvision's VisionTransformer)")

    def forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if not (query is key is value) or key_padding_mask is not None or attn_mask is not None or is_causal:
            raise ModelError("attention explainers support unmasked self-attention only (query = key = value)")
        b, n, c = query.shape
        h = mha.num_heads
        d = c // h
        qkv = F.linear(query, mha.in_proj_weight, mha.in_proj_bias).view(b, n, 3, h, d).permute(2, 0, 3, 1, 4)
        box: list[Tensor] = []

        def keep(p: Tensor) -> None:
            box.append(p)
            if record is not None:
                record(p)

        out = scaled_attention(qkv[0], qkv[1], qkv[2], d ** -0.5, keep, uniform_rule)
        out = mha.out_proj(out.transpose(1, 2).reshape(b, n, c))
        weights = (box[0].mean(1) if average_attn_weights else box[0]) if need_weights else None
        return out, weights

    return forward


def timm_forward(attn: nn.Module, record, uniform_rule: bool) -> Callable[..., Tensor]:
    """timm `Attention.forward` written out with the uniform rule (AttnLRP); same function."""
    if getattr(attn, "gate", None) is not None:
        raise ModelError("AttnLRP does not support timm's gated attention")

    def forward(x, attn_mask=None, is_causal=False):
        if attn_mask is not None or is_causal:
            raise ModelError("attention explainers support unmasked self-attention only")
        b, n, _ = x.shape
        qkv = attn.qkv(x).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = attn.q_norm(q), attn.k_norm(k)
        out = scaled_attention(q, k, v, attn.scale, record, uniform_rule)
        out = attn.norm(out.transpose(1, 2).reshape(b, n, attn.attn_dim))
        return attn.proj_drop(attn.proj(out))

    return forward


# ---------------------------------------------------------------------------- the capture


@dataclass
class AttentionRecord:
    """What `attention_capture` saw during the forwards in its block, in forward order: each attention
    call's probabilities (B, heads, N, N) and, when asked, each block's output tokens (B, N, C)."""

    probs: list[Tensor] = field(default_factory=list)
    tokens: list[Tensor] = field(default_factory=list)


Leaves = Literal["none", "first", "every"]


@contextlib.contextmanager
def attention_capture(module: nn.Module, leaves: Leaves = "none", tokens: bool = False,
                      what: str = "this explainer") -> Iterator[AttentionRecord]:
    """Inside the block every attention module of `module` computes an explicit softmax whose
    probabilities are recorded (torchvision: `nn.MultiheadAttention` runs as if `need_weights=True,
    average_attn_weights=False`, by a temporary forward; timm: `fused_attn` off and a forward hook on
    `attn_drop`, which receives the probabilities). Gradients with respect to the recorded
    probabilities can be taken. `leaves`: the input of the first block (`first`) or of every block
    (`every`) becomes a graph leaf requiring grad, so gradients reach the attention of a frozen model
    (`every` cuts the gradient between blocks: ∂s/∂A of a block's own score only). `tokens`: record
    each block's output. On exit (also on error) forwards, flags and hooks are what they were."""
    sites = require_attention(module, what)
    record = AttentionRecord()
    forwards: dict[nn.Module, Callable] = {}
    handles = []
    flags: list[tuple[nn.Module, object]] = []
    missing = object()
    try:
        for i, site in enumerate(sites):
            if isinstance(site.attention, nn.MultiheadAttention):
                forwards[site.attention] = torchvision_forward(site.attention, record.probs.append, False)
            else:
                flags.append((site.attention, site.attention.__dict__.get("fused_attn", missing)))
                site.attention.fused_attn = False
                handles.append(site.attention.attn_drop.register_forward_hook(
                    lambda mod, inp, out: record.probs.append(out)))
            if leaves == "every" or (leaves == "first" and i == 0):
                handles.append(site.block.register_forward_pre_hook(
                    lambda mod, args: (args[0].detach().requires_grad_(torch.is_grad_enabled()), *args[1:])))
            if tokens:
                handles.append(site.block.register_forward_hook(lambda mod, inp, out: record.tokens.append(out)))
        with relevance_rules(forwards):
            yield record
    finally:
        for h in handles:
            h.remove()
        for m, flag in flags:
            if flag is missing:
                m.__dict__.pop("fused_attn", None)
            else:
                m.fused_attn = flag

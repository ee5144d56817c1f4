"""Layer-wise relevance rules as temporary forwards: inside `relevance_rules(...)` each layer that has
a rule computes its output and back-propagates relevance by that rule; the model is restored on exit.

The rules are Zennit's (Anders et al., "Software for dataset-wide XAI", 2021; Montavon et al., "Layer-
wise relevance propagation: an overview", 2019), term by term, without the per-call costs of hooks:
modified parameters are made once (and kept by saliency/lrp.py while the parameters are unchanged),
terms on an all-zero input part are skipped (they add exactly 0), a rule's output is reused where it equals the forward's, and the layer's own input
gradient is never computed when the rule replaces it. bench/bench_lrp.py times it against Zennit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def stabilize(z: Tensor, epsilon: float) -> Tensor:
    """z shifted away from 0 by `epsilon` in the direction of its sign (+ for 0): bit for bit
    Zennit's `z + ((z == 0) + sign(z)) · ε`, in three passes over z instead of six."""
    return z + torch.where(z < 0, -epsilon, epsilon)


# ---------------------------------------------------------------------------- a linear layer as a function


@dataclass
class LinearOp:
    """`module`'s linear map with any weight and bias: `apply(x, W, b)` and the gradient of its
    output with respect to its input, `input_grad(x, W, s)` (the transposed map of s)."""

    module: nn.Module

    def apply(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        m = self.module
        if isinstance(m, nn.Linear):
            return F.linear(x, weight, bias)
        if isinstance(m, nn.modules.conv._ConvTransposeNd):
            fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[weight.dim() - 3]
            return fn(x, weight, bias, m.stride, m.padding, m.output_padding, m.groups, m.dilation)
        return m._conv_forward(x, weight, bias)

    def input_grad(self, x: Tensor, weight: Tensor, s: Tensor) -> Tensor:
        m = self.module
        if isinstance(m, nn.Linear):
            return s.matmul(weight)
        direct = m.padding_mode == "zeros" and not isinstance(m.padding, str)
        if direct:
            transposed = isinstance(m, nn.modules.conv._ConvTransposeNd)
            return torch.ops.aten.convolution_backward(
                s, x, weight, None, list(m.stride), list(m.padding), list(m.dilation), transposed,
                list(m.output_padding) if transposed else [0] * (weight.dim() - 2), m.groups, [True, False, False])[0]
        with torch.enable_grad():  # padding modes and 'same' padding: through autograd
            xg = x.detach().requires_grad_(True)
            return torch.autograd.grad(self.apply(xg, weight, None), xg, s)[0]


# ---------------------------------------------------------------------------- the rules


class Rule:
    """How one layer passes relevance R (the gradient arriving at its output) to its input.
    `saves` names what the backward needs: "x" (the input), "out" (the output)."""

    saves: frozenset[str] = frozenset()

    def backward(self, layer: RuleLayer, x: Tensor | None, out: Tensor | None, rel: Tensor) -> Tensor:
        raise NotImplementedError


class Pass(Rule):
    """R passes unchanged (activations, BatchNorm)."""

    def backward(self, layer, x, out, rel):
        return rel


@dataclass
class Norm(Rule):
    """R_i = x_i · ∂z/∂x_i · R / z for a parameter-free linear layer (average pooling, sums)."""

    stabilizer: float = 1e-6
    saves = frozenset({"x", "out"})

    def backward(self, layer, x, out, rel):
        s = rel / stabilize(out, self.stabilizer)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            return x * torch.autograd.grad(layer.original(xg), xg, s)[0]


@dataclass
class Epsilon(Rule):
    """LRP-ε (Bach et al. 2015): R_i = x_i Σ_j w_ij R_j / (z_j ± ε); z is the layer's own output."""

    epsilon: float = 1e-6
    saves = frozenset({"x", "out"})

    def backward(self, layer, x, out, rel):
        return x * layer.op.input_grad(x, layer.weight, rel / stabilize(out, self.epsilon))


def split_sign(x: Tensor) -> tuple[Tensor, Tensor | None]:
    """(x⁺, x⁻), x⁻ None when x has no negative entry (its terms would add exactly 0)."""
    if bool(x.amin() >= 0):
        return x, None
    return x.clamp(min=0), x.clamp(max=0)


@dataclass
class ZPlus(Rule):
    """z⁺ (Montavon et al. 2017): positive contributions only — x⁺ through w⁺ (with b⁺) and x⁻ through
    w⁻ — normalized by their sum."""

    stabilizer: float = 1e-6
    saves = frozenset({"x"})

    def backward(self, layer, x, out, rel):
        (wp, bp), (wn, _) = layer.params("clamp_min", True), layer.params("clamp_max", False)
        xp, xn = split_sign(x)
        z = layer.op.apply(xp, wp, bp)
        if xn is not None:
            z = z + layer.op.apply(xn, wn, None)
        s = rel / stabilize(z, self.stabilizer)
        r = xp * layer.op.input_grad(xp, wp, s)
        return r if xn is None else r + xn * layer.op.input_grad(xn, wn, s)


@dataclass
class AlphaBeta(Rule):
    """αβ (Bach et al. 2015): α × the positive contributions normalized by their sum, minus β × the
    negative ones normalized by theirs."""

    alpha: float = 2.0
    beta: float = 1.0
    stabilizer: float = 1e-6
    saves = frozenset({"x"})

    def backward(self, layer, x, out, rel):
        (wp, bp), (wn, bn) = layer.params("clamp_min", True), layer.params("clamp_max", True)
        op, (xp, xn) = layer.op, split_sign(x)
        zp, zn = op.apply(xp, wp, bp), op.apply(xp, wn, bn)
        if xn is not None:
            zp, zn = zp + op.apply(xn, wn, None), zn + op.apply(xn, wp, None)
        sp, sn = rel / stabilize(zp, self.stabilizer), rel / stabilize(zn, self.stabilizer)
        pos, neg = xp * op.input_grad(xp, wp, sp), xp * op.input_grad(xp, wn, sn)
        if xn is not None:
            pos, neg = pos + xn * op.input_grad(xn, wn, sp), neg + xn * op.input_grad(xn, wp, sn)
        return self.alpha * pos - self.beta * neg


@dataclass
class Gamma(Rule):
    """γ (Montavon et al. 2019): weights w + γw⁺ where the output is positive, w + γw⁻ where it is
    negative, each side normalized by its own sum."""

    gamma: float = 0.25
    stabilizer: float = 1e-6
    saves = frozenset({"x", "out"})

    def backward(self, layer, x, out, rel):
        (wa, ba), (wb, bb) = layer.params(("gamma_min", self.gamma), True), layer.params(("gamma_max", self.gamma), True)
        op, (xp, xn) = layer.op, split_sign(x)
        za, zb = op.apply(xp, wa, ba), op.apply(xp, wb, bb)
        if xn is not None:
            za, zb = za + op.apply(xn, wb, None), zb + op.apply(xn, wa, None)
        sa = (out > 0.0) * rel / stabilize(za, self.stabilizer)
        sb = (out < 0.0) * rel / stabilize(zb, self.stabilizer)
        if xn is None:
            return xp * op.input_grad(xp, wa, sa) + xp * op.input_grad(xp, wb, sb)
        return (xp * op.input_grad(xp, wa, sa) + xn * op.input_grad(xn, wb, sa)
                + xp * op.input_grad(xp, wb, sb) + xn * op.input_grad(xn, wa, sb))


@dataclass
class ZBox(Rule):
    """z^B (Montavon et al. 2017) for inputs bounded by `low` ≤ x ≤ `high` (first layer)."""

    low: Tensor
    high: Tensor
    stabilizer: float = 1e-6
    saves = frozenset({"x", "out"})

    def backward(self, layer, x, out, rel):
        (wp, bp), (wn, bn) = layer.params("clamp_min", True), layer.params("clamp_max", True)
        op = layer.op
        low = bounds(self.low, x)
        high = bounds(self.high, x)
        z = out - (op.apply(low, wp, bp) + op.apply(high, wn, bn))
        s = rel / stabilize(z, self.stabilizer)
        return x * op.input_grad(x, layer.weight, s) - (low * op.input_grad(low, wp, s) + high * op.input_grad(high, wn, s))


def bounds(value: Tensor, x: Tensor) -> Tensor:
    """`value` ((1,C,H,W), (C,1,1) or scalar) expanded to x's shape, first rows only when longer."""
    value = torch.as_tensor(value).to(x)
    if value.dim() == x.dim() and value.shape[0] > x.shape[0]:
        value = value[: x.shape[0]]
    return value.expand(x.shape).contiguous(memory_format=torch.channels_last if x.is_contiguous(
        memory_format=torch.channels_last) and x.dim() == 4 else torch.contiguous_format)


@dataclass
class Flat(Rule):
    """Flat (Lapuschkin et al. 2019): every weight 1, no bias, input ones — relevance spread
    uniformly over each output's receptive field."""

    stabilizer: float = 1e-6
    saves = frozenset({"x"})

    def backward(self, layer, x, out, rel):
        ones_w, _ = layer.params("ones", False)
        ones_x = torch.ones_like(x)
        s = rel / stabilize(layer.op.apply(ones_x, ones_w, None), self.stabilizer)
        return layer.op.input_grad(ones_x, ones_w, s)


# ---------------------------------------------------------------------------- a layer with its rule


def modified(weight: Tensor, how) -> Tensor:
    kind, gamma = how if isinstance(how, tuple) else (how, None)
    if kind == "clamp_min":
        return weight.clamp(min=0)
    if kind == "clamp_max":
        return weight.clamp(max=0)
    if kind == "gamma_min":
        return weight + gamma * weight.clamp(min=0)
    if kind == "gamma_max":
        return weight + gamma * weight.clamp(max=0)
    return torch.ones_like(weight)


@dataclass(eq=False)
class RuleLayer:
    """One module under a rule: its forward (the original one, or the linear map with BatchNorm
    merged into `weight`/`bias`, or a merged BatchNorm's identity), and the rule's parameters,
    each made once per `relevance_rules` block."""

    module: nn.Module
    rule: Rule
    weight: Tensor | None = None
    bias: Tensor | None = None
    merged_bn: bool = False  # a BatchNorm merged into its linear layer: identity statistics
    _params: dict = field(default_factory=dict)

    def __post_init__(self):
        self.original = type(self.module).forward.__get__(self.module)
        self.op = LinearOp(self.module) if self.weight is not None else None

    def params(self, how, keep_bias: bool) -> tuple[Tensor, Tensor | None]:
        key = (how, keep_bias)
        if key not in self._params:
            bias = modified(self.bias, how) if keep_bias and self.bias is not None else None
            self._params[key] = (modified(self.weight, how), bias)
        return self._params[key]

    def plain(self, x: Tensor, out_of_place: bool = False) -> Tensor:
        if self.op is not None:
            return self.op.apply(x, self.weight, self.bias)
        if self.merged_bn:  # Zennit's merged BatchNorm: statistics 0/1, affine 1/0 (scales by 1/√(1+eps))
            key = ("identity_bn", x.shape[1], x.dtype, x.device)
            if key not in self._params:
                self._params[key] = (torch.ones(x.shape[1], dtype=x.dtype, device=x.device),
                                     torch.zeros(x.shape[1], dtype=x.dtype, device=x.device))
            one, zero = self._params[key]
            return F.batch_norm(x, zero, one, one, zero, False, 0.0, self.module.eps)
        if out_of_place and getattr(self.module, "inplace", False):
            self.module.inplace = False  # under autograd the input may be saved by the rule before it
            try:
                return self.original(x)
            finally:
                self.module.inplace = True
        return self.original(x)

    def __call__(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return _RuleFunction.apply(x, self)
        return self.plain(x)


class _RuleFunction(torch.autograd.Function):
    """The layer's forward; its backward is the layer's rule applied to the incoming relevance."""

    @staticmethod
    def forward(ctx, x: Tensor, layer: RuleLayer) -> Tensor:
        out = layer.plain(x, out_of_place=True)
        ctx.layer = layer
        ctx.save_for_backward(x if "x" in layer.rule.saves else None, out if "out" in layer.rule.saves else None)
        return out

    @staticmethod
    def backward(ctx, rel: Tensor):
        x, out = ctx.saved_tensors
        layer = ctx.layer
        return layer.rule.backward(layer, x, out, rel), None


@contextlib.contextmanager
def relevance_rules(forwards: dict[nn.Module, Callable[[Tensor], Tensor]]) -> Iterator[None]:
    """Inside the block each module of `forwards` runs the given forward (a RuleLayer, or a residual
    block's canonical forward) instead of its own; its hooks still run. On exit, also on error,
    every module gets its own forward back."""
    missing = object()
    saved = {}
    try:
        for module, fn in forwards.items():
            saved[module] = module.__dict__.get("forward", missing)
            module.__dict__["forward"] = fn
        yield
    finally:
        for module, previous in saved.items():
            if previous is missing:
                module.__dict__.pop("forward", None)
            else:
                module.__dict__["forward"] = previous

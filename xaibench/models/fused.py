"""A BatchNorm-folded copy of a model for the no-grad CPU forwards of perturbation loops
(Score-CAM, RISE, occlusion, deletion/insertion, …): rebuilt when the parameters change.

The copy is made with torch.fx (symbolic tracing; each eval-mode BatchNorm that alone reads a
convolution's or linear layer's output is folded into it, `torch.fx.experimental.optimization.fuse`'s
patterns). A small model runs it in eager mode, channels-last, its ReLUs in place; a model with at
least MKL_MIN_PARAMETERS parameters has each convolution fused with its ReLU, or with the residual
addition and ReLU after it, into one oneDNN call with prepacked weights (models/onednn_fusion.py; where
that operator is missing, torch.fx's `optimize_for_inference`), which is faster where the convolutions
are large (bench/bench_fused.py, ResNet-50: RISE 0.99× and deletion/insertion 1.01× TorchScript's copy,
where `optimize_for_inference` took 1.04–1.07× and channels-last 1.29×; the built-in model 0.89×
channels-last against 1.12×). The rule depends on the model
only, so every process of a run computes the same logits. The copy computes the same function; only
the rounding differs (~1e-6 relative). A model that cannot be traced, or whose copy disagrees with it
on a check batch, runs as is. (TorchScript's freeze/optimize_for_inference did this before; PyTorch
deprecated it.)
"""

from __future__ import annotations

import copy
import operator
import warnings

import torch
from torch import Tensor, nn

from . import onednn_fusion

_INT_OF_SIZE = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def state_tensors(module: nn.Module) -> list[Tensor]:
    """Every parameter and buffer, in one walk of the module tree in `modules()` order (a shared
    tensor once per owner); a plain stack walk, without `named_modules`' name strings."""
    out, seen, stack = [], set(), [module]
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        out += [t for t in m._parameters.values() if t is not None]
        out += [t for t in m._buffers.values() if t is not None]
        stack += [c for c in reversed(m._modules.values()) if c is not None]
    return out


def version_key(module: nn.Module, tensors: list[Tensor] | None = None) -> tuple:
    """Where each parameter and buffer lives and its in-place version counter: changes whenever a
    tensor is replaced, moved or modified in place — not when modified through `.data`."""
    return tuple((t.data_ptr(), t._version) for t in (tensors if tensors is not None else state_tensors(module)))


def bit_sums(module: nn.Module, tensors: list[Tensor] | None = None) -> tuple[int, ...]:
    """A fingerprint of the parameters' and buffers' values (small tensors taken together, one op
    per dtype) that sees edits made through `.data` too: per group, the wrapping 32-bit sum of the
    bit patterns, and for floating tensors the bits of the sum of the values and of every third
    value. The bit sum alone misses a whole tensor doubled and negated (each element's bits move by
    2²³ + 2³¹, which wraps to 0 over 512 values) and any permutation; the value sums see those.
    Three vectorized reads of the weights (~35 ms for ResNet-50's 25 M parameters on one core); a
    model of at most SMALL_MODEL values is read as one group per dtype (~0.37 ms for the built-in CNN)."""
    tensors = tensors if tensors is not None else state_tensors(module)
    whole = sum(t.numel() for t in tensors) <= SMALL_MODEL
    small: dict[tuple, list[Tensor]] = {}
    sums = []
    with torch.no_grad():  # plain views, no autograd records
        for t in tensors:
            if whole or t.numel() <= SMALL_TENSOR:
                small.setdefault((t.dtype, t.device), []).append(t)
            else:
                sums.append(_bits_sum(t.reshape(-1)))
        # one copy per group, flattened in C++ (no view per tensor in Python)
        sums += [_bits_sum(torch._C._nn.flatten_dense_tensors(group)) for group in small.values()]
    return tuple(torch.cat([s.cpu() for s in sums]).tolist()) if sums else ()


SMALL_TENSOR = 1 << 16
SMALL_MODEL = 1 << 20  # values: below, one concatenation per dtype costs less than a read per tensor


def _bits_sum(flat: Tensor) -> Tensor:
    size = flat.element_size()
    try:
        bits = flat.view(_INT_OF_SIZE.get(size, torch.uint8))
    except RuntimeError:  # e.g. quantized tensors: location and version only
        return torch.zeros(1, dtype=torch.int64, device=flat.device)
    out = [bits.sum(dtype=torch.int64 if size == 8 else torch.int32).to(torch.int64)]  # a native-width sum
    if flat.is_floating_point():  # the values' sums, compared bit for bit (a NaN equals itself)
        out += [flat.sum().double().view(torch.int64), flat[::3].sum().double().view(torch.int64)]
    return torch.stack(out)


def state_key(module: nn.Module) -> tuple:
    """A fingerprint of every parameter and buffer (`version_key` and `bit_sums`): changes when a
    tensor is replaced, moved, modified in place, or modified through `.data`."""
    tensors = state_tensors(module)
    return version_key(module, tensors), bit_sums(module, tensors)


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


FOLDABLE = ((nn.Conv1d, nn.BatchNorm1d), (nn.Conv2d, nn.BatchNorm2d), (nn.Conv3d, nn.BatchNorm3d),
            (nn.Linear, nn.BatchNorm1d))


class FoldedCopy:
    """The traced copy of a module with each eval-mode BatchNorm that alone reads a convolution's
    (or linear layer's) output folded into it — `torch.fx.experimental.optimization.fuse`'s
    patterns, kept as (layer, BatchNorm) name pairs so `refresh` can re-fold new parameter values
    without tracing again."""

    def __init__(self, module: nn.Module):
        from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

        graph_module = torch.fx.symbolic_trace(copy.deepcopy(module).eval())
        modules = dict(graph_module.named_modules())
        self.pairs: dict[str, str] = {}  # folded layer name → its BatchNorm's name
        for node in list(graph_module.graph.nodes):
            src = node.args[0] if node.op == "call_module" and node.args else None
            if not isinstance(src, torch.fx.Node) or src.op != "call_module" or len(src.users) != 1:
                continue
            layer, bn = modules.get(src.target), modules.get(node.target)
            if not any(type(layer) is a and type(bn) is b for a, b in FOLDABLE) or not bn.track_running_stats:
                continue
            fused = fuse_linear_bn_eval(layer, bn) if isinstance(layer, nn.Linear) else fuse_conv_bn_eval(layer, bn)
            parent, _, name = src.target.rpartition(".")
            setattr(graph_module.get_submodule(parent) if parent else graph_module, name, fused)
            modules[src.target] = fused
            self.pairs[src.target] = node.target
            node.replace_all_uses_with(src)
            graph_module.graph.erase_node(node)
        graph_module.graph.lint()
        graph_module = torch.fx.GraphModule(graph_module, graph_module.graph)  # keeps only used modules
        relu_in_place(graph_module)
        for p in graph_module.parameters():
            p.requires_grad_(False)
        self.module = graph_module

    def refresh(self, original: nn.Module) -> None:
        """Copy `original`'s current parameters and buffers in, re-folding each folded pair."""
        from torch.nn.utils.fusion import fuse_conv_bn_weights, fuse_linear_bn_weights

        theirs = dict(original.named_modules())
        with torch.no_grad():
            for name, mine in self.module.named_modules():
                if name in self.pairs:
                    layer, bn = theirs[name], theirs[self.pairs[name]]
                    fold = fuse_linear_bn_weights if isinstance(layer, nn.Linear) else fuse_conv_bn_weights
                    w, b = fold(layer.weight, layer.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
                    mine.weight.copy_(w)
                    mine.bias.copy_(b)
                    continue
                for attr, t in (*mine.named_parameters(recurse=False), *mine.named_buffers(recurse=False)):
                    t.copy_(getattr(theirs[name], attr))


MKL_MIN_PARAMETERS = 5_000_000  # from here on the oneDNN-layout copy (see the module docstring)


class MklCopy:
    """torch.fx's `optimize_for_inference` of a module: BatchNorm folded, dropout removed, runs of
    oneDNN-supported layers in the blocked layout with prepacked weights. New parameter values
    mean a new copy (`refresh` builds it again: prepacked weights cannot be updated in place)."""

    def __init__(self, module: nn.Module):
        from torch.fx.experimental.optimization import optimize_for_inference

        from .outputs import LogitsOf

        if isinstance(module, LogitsOf):  # trace the classifier; its logits wrapper stays outside the graph
            self.module: nn.Module = LogitsOf(optimize_for_inference(copy.deepcopy(module.module).eval()))
        else:
            self.module = optimize_for_inference(copy.deepcopy(module).eval())
        for p in self.module.parameters():
            p.requires_grad_(False)

    def refresh(self, original: nn.Module) -> None:
        self.module = MklCopy(original).module


class PointwiseCopy:
    """The folded copy of a large CNN, channels-last, each convolution fused with its ReLU or its
    residual addition + ReLU into one oneDNN call with prepacked weights (models/onednn_fusion.py).
    New parameter values mean a new copy (prepacked weights cannot be updated in place)."""

    def __init__(self, module: nn.Module, example: Tensor):
        self.example = example
        graph_module = FoldedCopy(module).module.to(memory_format=torch.channels_last)
        example = example.contiguous(memory_format=torch.channels_last)
        graph = graph_module.graph
        for node in list(graph.nodes):  # every input in channels-last, the layout the weights are packed for
            if node.op == "placeholder":
                with graph.inserting_after(node):
                    converted = graph.call_method("contiguous", (node,), {"memory_format": torch.channels_last})
                node.replace_all_uses_with(converted, delete_user_cb=lambda user, c=converted: user is not c)
        graph_module.recompile()
        if not onednn_fusion.fuse_conv_pointwise(graph_module, example):
            raise RuntimeError("no convolution to fuse")
        self.module = graph_module

    def refresh(self, original: nn.Module) -> None:
        self.module = PointwiseCopy(original, self.example).module


def uses_mkl_layout(module: nn.Module, image: Tensor) -> bool:
    """The oneDNN-layout copy for large image models on a CPU with oneDNN, float32 only."""
    params = list(module.parameters())
    return (image.dim() == 4 and image.dtype == torch.float32 and torch.backends.mkldnn.is_available()
            and all(p.device.type == "cpu" and p.dtype == torch.float32 for p in params)
            and sum(p.numel() for p in params) >= MKL_MIN_PARAMETERS)


def fold_for_inference(module: nn.Module, image: Tensor) -> FoldedCopy | PointwiseCopy | MklCopy | None:
    """The folded copy of `module` — channels-last, or for large models the fused-convolution copy
    (else, when it fails, the oneDNN-layout copy) —
    checked against the module on three copies of `image` (1,C,H,W); None when tracing fails or the
    check disagrees (a large model whose oneDNN copy fails gets the channels-last one)."""
    check = image.expand(3, *image.shape[1:]).contiguous()
    if uses_mkl_layout(module, image):
        if onednn_fusion.available():
            fused = _checked(module, check, lambda: PointwiseCopy(module, check))
            if fused is not None:
                return fused
        mkl = _checked(module, check, lambda: MklCopy(module))
        if mkl is not None:
            return mkl
    return _checked(module, check, lambda: _channels_last(FoldedCopy(module), check))


def _channels_last(folded: FoldedCopy, check: Tensor) -> FoldedCopy:
    if check.dim() == 4:
        folded.module.to(memory_format=torch.channels_last)
    return folded


def _checked(module: nn.Module, check: Tensor, build):
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            folded = build()
            want, got = module(check), folded.module(check)
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
        self._bits: tuple | None = None  # bit sums, taken once per `ModelAdapter.fused_inference()` block
        self._folded: FoldedCopy | None = None

    def begin(self) -> None:
        """A new `fused_inference()` block: take the parameters' bit sums again at its first use
        (within a block, parameters replaced or changed in place are still seen at every
        forward; changes made through `.data` in the middle of a block are not)."""
        self._bits = None

    def module_for(self, x: Tensor) -> nn.Module | None:
        if not self.enabled or torch.is_autocast_enabled(x.device.type) or has_hooks(self.module):
            return None  # autocast and hooks are for the model as it is
        if self._bits is None:
            self._bits = bit_sums(self.module)
        key = (version_key(self.module), self._bits, x.dtype)
        if key == self._key:
            return self._folded.module
        if self._folded is not None and self._key[2] == x.dtype:
            try:  # new parameter values in the same structure: re-fold them, no new trace
                self._folded.refresh(self.module)
                self._key = key
                return self._folded.module
            except (KeyError, AttributeError, RuntimeError):  # the structure changed: trace again
                pass
        self._key, self._folded = key, fold_for_inference(self.module, x[:1])
        self.enabled = self._folded is not None  # a model that cannot be traced is not retried
        return self._folded.module if self._folded is not None else None

    def forward(self, x: Tensor) -> Tensor | None:
        """Logits of `x` through the copy, or None when it is not used. (The input is not converted:
        a convolution with channels-last weights answers in channels-last either way.)"""
        folded = self.module_for(x)
        return None if folded is None else folded(x)

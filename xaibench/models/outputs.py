"""What a classifier returns, turned into a (B, classes) logits tensor: tuples, dicts, Hugging Face
`ModelOutput`s and single logits, plus the input checks of `ModelAdapter.wrap` (channels, first conv).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from ..errors import ModelError

SCORES = ("softmax", "sigmoid")  # how a model's logits become class probabilities


def as_logits(out: object, name: str = "model") -> Tensor:
    """(B, classes) logits of a model output (`output_tensor`); a single logit per image, (B,) or
    (B,1), becomes (B,2) = [−z, z] (a binary classifier: class 1 scores the logit, class 0 its
    negation)."""
    logits = output_tensor(out, name)
    if is_single_logit(logits):
        z = logits.reshape(-1, 1)
        return torch.cat([-z, z], dim=1)
    return logits


def is_single_logit(logits: Tensor) -> bool:
    """True for the (B,) or (B,1) output of a binary classifier with one logit."""
    return logits.dim() == 1 or (logits.dim() == 2 and logits.shape[1] == 1)


def output_tensor(out: object, name: str = "model") -> Tensor:
    """The logits tensor in a model output: a tensor as is; an object or mapping with `logits`
    (Hugging Face `ModelOutput`, a dict, a named tuple) its `logits`; a mapping with one tensor
    that tensor; another tuple or list its first element (the main head before auxiliary heads)."""
    if isinstance(out, Tensor):
        if out.dim() not in (1, 2):
            raise ModelError(f"{name} returned a tensor of shape {tuple(out.shape)}; a classifier must return "
                             "(B, classes) logits (or (B,) / (B,1) for a binary one)")
        return out
    if isinstance(out, Mapping):
        if "logits" in out:
            return output_tensor(out["logits"], name)
        tensors = [k for k, v in out.items() if isinstance(v, Tensor)]
        if len(tensors) == 1:
            return output_tensor(out[tensors[0]], name)
        raise ModelError(f"{name} returned a mapping without a 'logits' key (keys: {', '.join(map(str, out))}); "
                         "return the logits tensor or a mapping with 'logits'")
    logits = getattr(out, "logits", None)
    if isinstance(logits, Tensor):
        return output_tensor(logits, name)
    if isinstance(out, Sequence) and not isinstance(out, str) and len(out) > 0:
        return output_tensor(out[0], name)
    raise ModelError(f"{name} returned {type(out).__name__}; a classifier must return logits: a tensor, a tuple "
                     "whose first element is the logits, or a mapping / ModelOutput with 'logits'")


# torch.fx traces `LogitsOf` with `as_logits` as one opaque call on the module's output (its
# isinstance checks run on the real output, after the traced layers)
torch.fx.wrap("as_logits")


class LogitsOf(nn.Module):
    """`module` followed by `as_logits`: what the fused inference copy traces (so models that return
    tuples or ModelOutputs get a traced copy that returns the logits tensor)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        return as_logits(self.module(x))


def first_conv(module: nn.Module) -> tuple[str, nn.Conv2d] | None:
    """The first `nn.Conv2d` in module order (the input convolution of a usual CNN), or None."""
    return next(((n, m) for n, m in module.named_modules() if isinstance(m, nn.Conv2d)), None)


def input_channels(module: nn.Module, mean: Sequence[float], std: Sequence[float], channels: int | None,
                   name: str) -> tuple[list[float], list[float], int]:
    """(mean, std, channels) checked: one mean and std per input channel (a single value is repeated
    when `channels` is given), channels inferred from their length, and — when the model has a
    convolution — the first one's `in_channels` equal to them."""
    mean, std = [float(v) for v in mean], [float(v) for v in std]
    if channels is not None:
        mean = mean * channels if len(mean) == 1 else mean
        std = std * channels if len(std) == 1 else std
    if len(mean) != len(std) or not mean:
        raise ModelError(f"{name}: mean has {len(mean)} values and std {len(std)}; give one of each per input channel")
    if channels is not None and channels != len(mean):
        raise ModelError(f"{name}: channels={channels} but mean/std have {len(mean)} values; give one per input channel")
    if any(s <= 0 for s in std):
        raise ModelError(f"{name}: std must be > 0 for every channel, got {std}")
    conv = first_conv(module)
    if conv is not None and conv[1].in_channels != len(mean):
        raise ModelError(
            f"{name}: its first convolution '{conv[0]}' takes {conv[1].in_channels} input channels, but mean/std have "
            f"{len(mean)} values (the input channels); give mean and std with {conv[1].in_channels} values each"
        )
    return mean, std, len(mean)

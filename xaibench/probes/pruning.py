"""Channel pruning for the neuron-similarity validation (docs/methods.md §Neuron similarity): find the conv that
produces a layer's channels, prune them inside a context that restores the model, measure accuracy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Literal

import torch
from torch import Tensor, nn

from ..errors import DataError, LayerError
from ..models.adapter import ModelAdapter
from ..models.edits import zeroed_filters, zeroed_outputs

PruneMode = Literal["auto", "weights", "output"]


def producing_conv(model: ModelAdapter, layer: str) -> tuple[nn.Conv2d, nn.modules.batchnorm._BatchNorm | None]:
    """The conv whose output channels become `layer`'s channels — the last Conv2d with as many
    output channels that finishes before `layer` does — and the first BatchNorm with that many
    features that runs after it and before `layer` finishes (None when there is none)."""
    modules = model.layers()
    target = modules[model.resolve_layer(layer)]
    events: list[tuple[str, nn.Module, int]] = []
    done: list[int] = []
    hooks = [(m, lambda mod, i, o, n=n: events.append((n, mod, o.shape[1])))
             for n, m in modules.items() if isinstance(m, (nn.Conv2d, nn.modules.batchnorm._BatchNorm))]
    hooks.append((target, lambda mod, i, o: done.append(len(events)) if not done else None))
    model.dry_run(hooks)
    if not done:
        raise LayerError(f"layer '{layer}' is not used in the model's forward pass")
    before = events[: done[0]]
    convs = [i for i, (_, m, _) in enumerate(before) if isinstance(m, nn.Conv2d)]
    if not convs:
        raise LayerError(f"no convolution produces layer '{layer}'; prune with mode='output'")
    conv_pos = convs[-1]
    conv, out_channels = before[conv_pos][1], before[conv_pos][2]
    bn = next((m for _, m, c in before[conv_pos + 1:] if isinstance(m, nn.modules.batchnorm._BatchNorm)
               and c == out_channels), None)
    return conv, bn  # type: ignore[return-value]


def resolve_mode(model: ModelAdapter, layer: str, mode: str) -> str:
    """`auto` → `weights` when zeroing the producing conv's filters (and BatchNorm affine) zeroes
    the layer's output channels exactly — checked on a seeded random image — else `output`
    (a residual path or a later shift keeps the channel alive, e.g. in a ResNet block)."""
    if mode != "auto":
        return mode
    try:
        conv, bn = producing_conv(model, layer)
    except LayerError:
        return "output"
    gen = torch.Generator().manual_seed(0)
    h, w = model.input_size
    x = model.normalize(torch.rand(2, model.channels, h, w, generator=gen).to(model.device))
    channels = torch.arange(0, conv.out_channels, 2)
    with torch.no_grad(), model.inference(), zeroed_filters(conv, bn, channels), model.capture(layer) as cap:
        model.module(x)
        out = cap.activation
    if out.dim() < 2 or out.shape[1] != conv.out_channels:
        return "output"
    return "weights" if bool((out[:, channels] == 0).all()) else "output"


@contextlib.contextmanager
def pruned(model: ModelAdapter, layer: str, channels: Tensor, mode: str = "auto") -> Iterator[str]:
    """Prune output `channels` of `layer` for the duration of the block (thesis §5.2; docs/methods.md
    §4.5); yields the mode used. `weights`: zero the producing conv's filters, bias and the
    following BatchNorm's affine; `output`: zero the layer's output channels; `auto`: see
    `resolve_mode`. The model is restored exactly on exit."""
    used = resolve_mode(model, layer, mode)
    if used == "weights":
        conv, bn = producing_conv(model, layer)
        with zeroed_filters(conv, bn, channels):
            yield used
    else:
        with zeroed_outputs(model, layer, channels):
            yield used


def accuracy(model: ModelAdapter, data: Iterable) -> float:
    """Top-1 accuracy against the batches' labels (one inference-mode forward per batch)."""
    correct, total = 0, 0
    with torch.inference_mode():
        for batch in data:
            logits = model(model.normalize(batch.images.to(model.device)))
            correct += int((logits.argmax(1).cpu() == batch.labels.cpu()).sum())
            total += len(batch.labels)
    if total == 0:
        raise DataError("pruning validation: the dataset yielded no images")
    return correct / total


def ranked_channels(scores: Tensor, fraction: float) -> tuple[Tensor, Tensor]:
    """(top, bottom) channel indices: the round(fraction·C) (at least 1) highest and lowest
    `scores`; ties keep channel order (stable sort)."""
    c = scores.numel()
    k = max(1, min(c, int(round(fraction * c))))
    order = torch.sort(scores, descending=True, stable=True).indices
    return order[:k], torch.sort(scores, stable=True).indices[:k]

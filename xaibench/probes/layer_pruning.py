"""Layer pruning guided by neuron similarity (the neuron-similarity thesis §5.1; docs/methods.md
§Neuron similarity "Layer pruning"): cut the network after the layer where the class-mean
similarity curve peaks, put global average pooling and a new linear head on it, retrain the head,
and compare its accuracy with the full model's.

The thesis retrains the whole truncated network (30 epochs); here the layers up to the cut are
frozen and only the linear head is trained, on the pooled features computed once, so that the
retraining takes seconds on a CPU and is reproducible from a seed.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, DataError
from ..models.adapter import ModelAdapter


def peak_layer(curves: pd.DataFrame, average: str = "simple", method: int = 1) -> str:
    """The layer whose class-mean similarity (scope `mean` of the neuron-similarity `curves`
    table) is highest for `average` and `method`, the cut of the thesis' §5.1 (Fig. 5-1: "the
    similarity peaks at layer 3, so the later layers are redundant"); the earliest on a tie."""
    rows = curves[(curves.scope == "mean") & (curves.average == average) & (curves.method == method)]
    if rows.empty:
        raise ConfigError(f"no similarity curve for average '{average}' and method {method}")
    rows = rows.sort_values("order")
    return str(rows.iloc[int(rows["mean"].to_numpy().argmax())].layer)


def pooled_features(model: ModelAdapter, data: Iterable, layers: list[str]) -> tuple[dict[str, Tensor], Tensor]:
    """({layer: (N,C) global-average-pooled activations}, (N,) labels) of every image of `data`,
    one no-grad forward per batch for all layers (the model itself is not changed; the hooks
    are removed)."""
    feats: dict[str, list[Tensor]] = {name: [] for name in layers}
    labels = []
    with torch.inference_mode(), model.capture(layers) as cap:
        for batch in data:
            model(model.normalize(batch.images.to(model.device)))
            for name in layers:
                a = cap.activations[name]
                if a.dim() != 4:
                    raise ConfigError(f"layer '{name}' outputs shape {tuple(a.shape)}; a cut needs (B,C,h,w)")
                feats[name].append(a.float().mean((2, 3)).cpu())
            labels.append(batch.labels.cpu())
    if not labels:
        raise DataError("layer pruning: the dataset yielded no images")
    return {name: torch.cat(v) for name, v in feats.items()}, torch.cat(labels)


def train_head(features: Tensor, labels: Tensor, classes: int, epochs: int = 20, lr: float = 0.01,
               batch_size: int = 256, seed: int = 0) -> nn.Linear:
    """A linear head on frozen pooled features (the thesis' new fully connected layer after global
    average pooling, §5.1), trained by Adam on the cross-entropy: features standardized by their
    training mean and std (folded back into the returned layer, so it reads raw pooled
    features), minibatches in an order drawn from `seed`, initialization from `seed`. The same
    inputs give the same head bit for bit."""
    gen = torch.Generator().manual_seed(seed)
    mean = features.mean(0)
    std = features.std(0).clamp_min(1e-6)
    z = (features - mean) / std
    head = nn.Linear(features.shape[1], classes)
    with torch.no_grad():
        bound = 1 / features.shape[1] ** 0.5
        head.weight.copy_(torch.rand(head.weight.shape, generator=gen) * 2 * bound - bound)
        head.bias.zero_()
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    n = len(labels)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(head(z[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    folded = nn.Linear(features.shape[1], classes)
    with torch.no_grad():
        folded.weight.copy_(head.weight / std)
        folded.bias.copy_(head.bias - (head.weight * (mean / std)).sum(1))
    return folded.requires_grad_(False)


def head_accuracy(head: nn.Linear, features: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy of `head` on pooled `features` against `labels`."""
    with torch.no_grad():
        return float((head(features).argmax(1) == labels).float().mean())


def parameter_count(model: ModelAdapter, layer: str, head: nn.Linear) -> int:
    """Parameters of the truncated network: every parameter of the modules that run before
    `layer` finishes (traced on one blank forward), plus the new head."""
    used: dict[int, int] = {}
    done: list[bool] = []

    def record(mod: nn.Module, inp, out) -> None:
        if not done:
            used[id(mod)] = sum(p.numel() for p in mod.parameters(recurse=False))

    hooks = [(mod, record) for mod in model.layers().values() if not list(mod.children())]
    hooks.append((model.module_of(layer), lambda mod, inp, out: done.append(True)))
    model.dry_run(hooks)
    return sum(used.values()) + sum(p.numel() for p in head.parameters())

"""Class-average images (docs/methods.md §Neuron similarity): simple (min-max rescaled), data-driven top-K /
bottom-K by confidence, and network-driven (activation maximization from the simple average).
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import torch
from torch import Tensor

from ..errors import ConfigError, DataError
from ..models.adapter import ModelAdapter

AVERAGE_KINDS = ("simple", "data-max", "data-min", "network")
DEFAULT_AVERAGES = ("simple", "data-max", "data-min")  # the thesis keeps `network` as a reference only (§3.2.3)


def network_images(model: ModelAdapter, classes: list[int], start: Tensor, steps: int) -> Tensor:
    """§4.1 `network`: featviz's optimizer (docs/methods.md §Pyramid activation maximization) from the simple averages;
    returns (K,3,H,W) pixels."""
    from ..featviz import visualize

    return visualize(model, classes, objective="class", steps=steps, init_images=start).images.to(start.device)


def rescale_like(avg: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """Min-max rescale each colour channel of (K,3,H,W) `avg` to [lo, hi] (K,3) — the thesis'
    normalization against over-averaging; a constant channel is left unchanged."""
    a_lo = avg.amin(dim=(2, 3), keepdim=True)
    a_hi = avg.amax(dim=(2, 3), keepdim=True)
    span = a_hi - a_lo
    lo, hi = lo[..., None, None], hi[..., None, None]
    scaled = (avg - a_lo) / span.clamp_min(torch.finfo(avg.dtype).tiny) * (hi - lo) + lo
    return torch.where(span > 0, scaled, avg)


def class_average_images(model: ModelAdapter, data: Iterable, kinds: list[str], classes: list[int] | None = None,
                         top_k: int = 50, network_steps: int = 256) -> tuple[Tensor, list[int], pd.DataFrame]:
    """(len(kinds), K, 3, H, W) class-average images in pixel space for the K classes present
    (or `classes`), and a table of how many images each used (docs/methods.md §Neuron similarity).

    Pass 1 (one no-grad forward per batch) accumulates per-class sums, per-channel pixel
    ranges and each image's `P_label`; pass 2 (no model) sums the top-K / bottom-K images by
    that probability. `data` must be re-iterable in the same order (a list or a DataLoader
    without shuffling)."""
    bad = [k for k in kinds if k not in AVERAGE_KINDS]
    if bad or not kinds:
        raise ConfigError(f"averages: {bad or kinds} not valid. Valid: {', '.join(AVERAGE_KINDS)}")
    device = model.device
    sums = counts = lo = hi = None
    labels_all, probs_all = [], []
    n_logits = None
    with torch.no_grad():
        for batch in data:
            pixels = batch.images.to(device).float()
            labels = batch.labels.to(device)
            logits = model(model.normalize(pixels))
            n_logits = logits.shape[1]
            if sums is None:
                sums = torch.zeros(n_logits, *pixels.shape[1:], device=device)
                counts = torch.zeros(n_logits, device=device)
                lo = torch.full((n_logits, pixels.shape[1]), float("inf"), device=device)
                hi = torch.full((n_logits, pixels.shape[1]), float("-inf"), device=device)
            if int(labels.max()) >= n_logits or int(labels.min()) < 0:
                raise DataError(f"labels must be in [0, {n_logits}) for a model with {n_logits} outputs")
            sums.index_add_(0, labels, pixels)
            counts.index_add_(0, labels, torch.ones_like(labels, dtype=counts.dtype))
            idx = labels.view(-1, 1).expand(-1, pixels.shape[1])
            lo.scatter_reduce_(0, idx, pixels.amin(dim=(2, 3)), reduce="amin")
            hi.scatter_reduce_(0, idx, pixels.amax(dim=(2, 3)), reduce="amax")
            labels_all.append(labels)
            probs_all.append(logits.float().softmax(1).gather(1, labels.view(-1, 1)).squeeze(1))
    if sums is None:
        raise DataError("neuron_similarity: the dataset yielded no images")
    present = [int(c) for c in torch.nonzero(counts > 0).flatten().tolist()]
    if classes:
        missing = [c for c in classes if c not in present]
        if missing:
            raise DataError(f"classes {missing} have no images in the dataset; classes present: {present}")
        present = list(classes)
    cls = torch.tensor(present, device=device)
    simple = rescale_like(sums[cls] / counts[cls].view(-1, 1, 1, 1), lo[cls], hi[cls])
    out: dict[str, Tensor] = {"simple": simple}
    used = {"simple": counts[cls].long()}
    if "data-max" in kinds or "data-min" in kinds:
        labels_all_t, probs_t = torch.cat(labels_all), torch.cat(probs_all)
        top = torch.zeros(len(labels_all_t), dtype=torch.bool, device=device)
        bottom = torch.zeros_like(top)
        for c in present:
            members = torch.nonzero(labels_all_t == c).flatten()
            k = min(top_k, len(members))
            order = torch.sort(probs_t[members], descending=True, stable=True).indices
            top[members[order[:k]]] = True
            bottom[members[order.flip(0)[:k]]] = True
        top_sum = torch.zeros_like(sums)
        bottom_sum = torch.zeros_like(sums)
        position = 0
        for batch in data:
            labels = batch.labels.to(device)
            sel = slice(position, position + len(labels))
            pixels = batch.images.to(device).float()
            top_sum.index_add_(0, labels[top[sel]], pixels[top[sel]])
            bottom_sum.index_add_(0, labels[bottom[sel]], pixels[bottom[sel]])
            position += len(labels)
        if position != len(top):
            raise DataError("neuron_similarity needs data that yields the same images on every pass")
        k_used = counts[cls].clamp(max=top_k)
        out["data-max"] = top_sum[cls] / k_used.view(-1, 1, 1, 1)
        out["data-min"] = bottom_sum[cls] / k_used.view(-1, 1, 1, 1)
        used["data-max"] = used["data-min"] = k_used.long()
    if "network" in kinds:
        out["network"] = network_images(model, present, simple, network_steps).float()
        used["network"] = counts[cls].long()
    images = torch.stack([out[k] for k in kinds])
    table = pd.DataFrame([dict(average=k, **{"class": c}, images=int(used[k][i])) for k in kinds
                          for i, c in enumerate(present)])
    return images, present, table

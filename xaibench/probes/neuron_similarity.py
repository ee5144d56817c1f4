"""Neuron similarity (neuron-similarity thesis ch. 3–5; docs/methods.md §Neuron similarity): guided-backprop
visualizations of every channel from class-average images, their cosine similarity to the class,
per-layer curves, top/bottom grids, and pruning validation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..errors import ConfigError
from ..memory import ChunkSize
from ..models.adapter import ModelAdapter
from ..models.edits import forward_to
from ..models.layers import BlockLayer, select_layers
from ..models.relu_rules import guided_relu
from ..registry import param
from ..tensorops import chunks
from .base import LAYERS_HELP, PROBES, Probe
from .class_average import AVERAGE_KINDS, class_average_images
from .pruning import PruneMode, accuracy, pruned, ranked_channels

Objective = Literal["sum", "mean", "max"]


OBJECTIVES = {"sum": lambda a: a.sum((-2, -1)), "mean": lambda a: a.mean((-2, -1)),
              "max": lambda a: a.flatten(-2).amax(-1)}


def guided_gradients(model: ModelAdapter, x: Tensor, classes: Tensor) -> Tensor:
    """(P,3,H,W) guided-backprop gradients of the logit of class `classes[p]` for image `x[p]`
    (Springenberg et al. 2015; method 2's φ of docs/methods.md §Neuron similarity), one forward and one
    backward for the batch (copies do not interact in eval mode)."""
    rows = torch.arange(x.shape[0], device=x.device)
    with torch.enable_grad(), guided_relu(model.module):
        xg = x.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(xg)[rows, classes.to(x.device, torch.long)].sum(), xg)
    return grad


def channel_visualizations(model: ModelAdapter, image: Tensor, layer: str, channels: Tensor,
                           objective: str = "sum") -> Tensor:
    """(P,3,H,W) guided-backprop visualizations `ω_k = GBP(image, layer, k)` of channels
    `channels[p]` of `layer` for one image (1,3,H,W) (Springenberg et al. 2015; docs/methods.md
    §4.2), each channel reduced over (h,w) by `objective` (sum | mean | max). ONE forward of
    the image, stopped at the layer, and ONE vmapped backward (`is_grads_batched`) whose copy p
    starts from the one-hot of its channel: equal to a backward per channel, without a forward
    per copy."""
    channels = channels.to(image.device, torch.long)
    with torch.enable_grad(), guided_relu(model.module):
        xg = image.detach().clone().requires_grad_(True)
        scores = OBJECTIVES[objective](forward_to(model, xg, layer)[0])  # (C,)
        one_hot = torch.eye(scores.shape[0], device=image.device, dtype=scores.dtype)[channels]
        (grad,) = torch.autograd.grad(scores, xg, one_hot, is_grads_batched=True)
    model.count_passes(backward_images=len(channels))
    return grad[:, 0]


def cosine_and_dead(reference: Tensor, vis: Tensor) -> tuple[Tensor, Tensor]:
    """(P,) cosine similarity of flattened `reference` and `vis` (§4.3) and the dead flag: an
    all-zero visualization has similarity 0 and is dead (a zero reference also gives 0)."""
    a, b = reference.flatten(1).double(), vis.flatten(1).double()
    dead = b.abs().amax(1) == 0
    na, nb = a.norm(dim=1), b.norm(dim=1)
    ok = (na > 0) & (nb > 0)
    cos = torch.where(ok, (a * b).sum(1) / (na * nb).clamp_min(1e-300), torch.zeros_like(na))
    return cos.float(), dead


def render(vis: Tensor) -> np.ndarray:
    """(P,3,H,W) signed gradients → (P,H,W,3) uint8, each scaled symmetrically around grey
    (0 → 128, ±max|ω| → 0/255)."""
    peak = vis.flatten(1).abs().amax(1).clamp_min(torch.finfo(vis.dtype).tiny).view(-1, 1, 1, 1)
    img = (vis / (2 * peak) + 0.5).clamp(0, 1)
    return (img * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@PROBES.register("neuron_similarity")
@dataclass
class NeuronSimilarity(Probe):
    """Neuron similarity from class-average images (the neuron-similarity thesis, ch. 3–5;
    docs/methods.md §Neuron similarity): for every class average `I_i` and every channel k of every selected
    layer j, `ω_ijk = GBP(I_i, j, k)` batched over channels (one forward of I_i stopped at layer j,
    then one vmapped backward for `chunk_size` channels), similarity method 1 `cos(I_i, ω)` and
    method 2 `cos(GBP(I_i, output, i), ω)`, dead channels flagged; then per-layer curves,
    top/bottom-8 grids, and pruning validation (§4.5, thesis Table 5-1). The data is read
    several times (class averages, then one forward pass per pruned model); a one-shot iterator
    is first kept as a list.
    """

    layers: str | list[str] = param("auto", help=LAYERS_HELP)
    averages: list[str] = param(default_factory=lambda: list(AVERAGE_KINDS), help="class-average images: simple, "
                                "data-max, data-min, network")
    methods: list[int] = param(default_factory=lambda: [1, 2], help="similarity methods: 1 cos(average image, ω), "
                               "2 cos(class visualization, ω)")
    objective: Objective = param("sum", help="channel objective over (h, w) of a visualization: sum, mean or max")
    classes: list[int] = param(default_factory=list, help="class ids analysed; []: every class that has images", ge=0)
    top_k: int = param(50, help="images per class of the data-max / data-min averages (K)", ge=1)
    network_steps: int = param(128, help="activation-maximization steps of the network average", ge=1)
    chunk_size: ChunkSize = param(64, help="channels per backward, one forward of the image each; auto: sized from "
                                           "the memory budget", ge=1)
    grid_classes: int = param(4, help="top/bottom-8 grids for the first N analysed classes", ge=0)
    grid_average: str = param("simple", help="class average the grids show (one of averages)")
    prune: bool = param(True, help="validate by pruning: accuracy with the top / bottom channels zeroed")
    prune_fraction: float = param(0.4, help="fraction p of each layer's channels pruned (§4.5)", gt=0, le=1)
    prune_average: str = param("simple", help="class average whose similarities rank the channels (one of averages)")
    prune_method: int = param(1, help="similarity method that ranks the channels (one of methods)")
    prune_mode: PruneMode = param("auto", help="weights (zero the producing conv), output (zero the layer's output) "
                                               "or auto (weights when exact)")

    def __post_init__(self) -> None:
        super().__post_init__()
        bad = [a for a in self.averages if a not in AVERAGE_KINDS]
        if bad or not self.averages:
            raise ConfigError(f"averages: {bad or '[]'} not valid. Valid: {', '.join(AVERAGE_KINDS)}")
        if not self.methods or any(m not in (1, 2) for m in self.methods):
            raise ConfigError(f"methods: {self.methods} not valid. Valid: 1, 2")
        for key in ("grid_average", "prune_average"):
            if getattr(self, key) not in self.averages:
                raise ConfigError(f"{key} = {getattr(self, key)!r} must be one of averages {self.averages}")
        if self.prune_method not in self.methods:
            raise ConfigError(f"prune_method = {self.prune_method} must be one of methods {self.methods}")

    # ---------------------------------------------------------------------------------------------
    def visualize_layer(self, model: ModelAdapter, x: Tensor, layer: BlockLayer, refs: dict[int, Tensor]):
        """Similarities (method → (N,C)) and dead flags (N,C) for every image of `x` and channel."""
        n, c = x.shape[0], layer.channels
        sims = {m: torch.empty(n, c, device=x.device) for m in refs}
        dead = torch.empty(n, c, dtype=torch.bool, device=x.device)
        channels = torch.arange(c, device=x.device)
        for i in range(n):
            for sl in chunks(c, self.chunk_size):
                vis = channel_visualizations(model, x[i:i + 1], layer.name, channels[sl], self.objective)
                for m, ref in refs.items():
                    sims[m][i, sl], dead[i, sl] = cosine_and_dead(ref[i:i + 1], vis)
        return sims, dead

    def __call__(self, model: ModelAdapter, data: Iterable) -> dict[str, pd.DataFrame | np.ndarray]:
        if iter(data) is data:  # a one-shot iterator: keep it, every pass needs the same images
            data = list(data)
        layers = select_layers(model, self.layers)
        kinds = list(self.averages)
        avgs, classes, avg_table = class_average_images(model, data, kinds, self.classes or None, self.top_k,
                                                        self.network_steps)
        a, k = avgs.shape[:2]
        x = model.normalize(avgs.flatten(0, 1))  # (A·K,3,H,W), image a·K + i is kind a, class i
        cls_of = torch.tensor(classes, device=x.device).repeat(a)
        refs: dict[int, Tensor] = {}
        if 1 in self.methods:
            refs[1] = x
        if 2 in self.methods:
            refs[2] = torch.cat([guided_gradients(model, x[sl], cls_of[sl]) for sl in chunks(len(x), self.chunk_size)])
        frames, per_layer = [], {}
        for order, layer in enumerate(layers):
            sims, dead = self.visualize_layer(model, x, layer, refs)
            per_layer[layer.name] = sims
            for m, s in sims.items():
                frames.append(pd.DataFrame({
                    "class": np.repeat(np.tile(classes, a), layer.channels),
                    "average": np.repeat(np.repeat(kinds, k), layer.channels),
                    "method": m, "layer": layer.name, "order": order, "stage": layer.stage,
                    "channel": np.tile(np.arange(layer.channels), a * k),
                    "similarity": s.flatten().cpu().numpy(), "dead": dead.flatten().cpu().numpy(),
                }))
        table = pd.concat(frames, ignore_index=True)
        out: dict[str, pd.DataFrame | np.ndarray] = {
            "similarity": table, "curves": curves(table), "class_average_info": avg_table,
            "class_averages": avgs.permute(0, 1, 3, 4, 2).cpu().numpy().astype(np.float32),  # (A,K,H,W,3)
        }
        grid_method = 1 if 1 in self.methods else self.methods[0]
        out["grids"], out["grid_index"] = self.grids(model, x, kinds, classes, layers, per_layer, grid_method)
        if self.prune:
            out["pruning"] = self.pruning(model, data, kinds, layers, per_layer)
        return out

    # ---------------------------------------------------------------------------------------------
    def grids(self, model, x, kinds, classes, layers, per_layer, method):
        """(L,G,16,H,W,3) uint8 top-8 then bottom-8 channel visualizations of each layer for the
        first G classes (ranked by that class's similarity), and their index table."""
        k = len(classes)
        g = min(self.grid_classes, k)
        h, w = x.shape[-2:]
        grid = np.full((len(layers), g, 16, h, w, 3), 128, dtype=np.uint8)
        rows = []
        base = kinds.index(self.grid_average) * k
        for li, layer in enumerate(layers):
            sims = per_layer[layer.name][method]
            n = min(8, layer.channels)
            for ci in range(g):
                s = sims[base + ci]
                top = torch.sort(s, descending=True, stable=True).indices[:n]
                bottom = torch.sort(s, stable=True).indices[:n]
                chosen = torch.cat([top, bottom])
                vis = channel_visualizations(model, x[base + ci:base + ci + 1], layer.name, chosen, self.objective)
                slots = list(range(n)) + list(range(8, 8 + n))
                grid[li, ci, slots] = render(vis)
                rows += [dict(layer=layer.name, **{"class": classes[ci]}, slot=slot, rank="top" if slot < 8 else "bottom",
                              channel=int(chn), similarity=float(s[chn])) for slot, chn in zip(slots, chosen.tolist())]
        return grid, pd.DataFrame(rows)

    def pruning(self, model, data, kinds, layers, per_layer) -> pd.DataFrame:
        """Thesis §5.2 / Table 5-1: accuracy with the top-p and the bottom-p channels of each layer
        zeroed (ranked by similarity averaged over classes), the model restored after each."""
        k = per_layer[layers[0].name][self.prune_method].shape[0] // len(kinds)
        base = kinds.index(self.prune_average) * k
        unpruned = accuracy(model, data)
        rows = []
        for layer in layers:
            scores = per_layer[layer.name][self.prune_method][base:base + k].mean(0)
            top, bottom = ranked_channels(scores, self.prune_fraction)
            with pruned(model, layer.name, top, self.prune_mode) as mode:
                acc_top = accuracy(model, data)
            with pruned(model, layer.name, bottom, self.prune_mode):
                acc_bottom = accuracy(model, data)
            rows.append(dict(layer=layer.name, stage=layer.stage, channels=layer.channels, pruned=len(top), mode=mode,
                             acc_unpruned=unpruned, acc_top=acc_top, acc_bottom=acc_bottom,
                             top_minus_bottom=acc_top - acc_bottom,
                             sim_top=float(scores[top].mean()), sim_bottom=float(scores[bottom].mean())))
        return pd.DataFrame(rows)


def curves(table: pd.DataFrame) -> pd.DataFrame:
    """Per-layer mean/std of similarity over channels, per class (scope `class`) and averaged over
    classes (scope `mean`, class −1: the mean of the per-class means and stds) (§4.4)."""
    keys = ["average", "method", "order", "layer", "stage"]
    per_class = (table.groupby(keys + ["class"], sort=True)
                 .agg(mean=("similarity", "mean"), std=("similarity", lambda s: float(np.std(s))),
                      dead_fraction=("dead", "mean")).reset_index())
    per_class["scope"] = "class"
    avg = per_class.groupby(keys, sort=True)[["mean", "std", "dead_fraction"]].mean().reset_index()
    avg["class"] = -1
    avg["scope"] = "mean"
    return pd.concat([per_class, avg[per_class.columns]], ignore_index=True)

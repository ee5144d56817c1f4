"""A run's plan: the model, data, explainers and metrics built and validated before the first batch,
with the seeds, protocols and chunk sizes every batch shares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import PluginSpec, RunConfig
from .datasets import DATASETS
from .devices import autocast, resolve_device
from .distributed import Ranks
from .errors import DataError
from .memory import auto_chunk_sizes, build_sized
from .metrics import METRICS, ImageMetric, derived_scores
from .models import ModelAdapter
from .models.fit import check_classes, dataset_options, default_layer
from .progress import Steps
from .results import rundir
from .results.provenance import Cost
from .saliency import EXPLAINERS, Explainer


@dataclass
class Plan:
    """Everything a run needs, built and validated before the first batch."""

    cfg: RunConfig
    run_dir: Path
    device: torch.device
    model: ModelAdapter
    dataset: Any
    indices: list[int]
    explainers: list[tuple[PluginSpec, Explainer]]
    metrics: list[tuple[PluginSpec, ImageMetric]]
    costs: dict[str, Cost] = field(default_factory=dict)
    chunks: dict[str, Any] = field(default_factory=dict)  # `chunk_size: auto` choices: sizes and probe

    @property
    def n_batches(self) -> int:
        return (len(self.indices) + self.cfg.dataset.batch_size - 1) // self.cfg.dataset.batch_size

    def batches(self) -> list[list[int]]:
        bs = self.cfg.dataset.batch_size
        return [self.indices[i : i + bs] for i in range(0, len(self.indices), bs)]

    def seed_for(self, batch: int, slot: int) -> int:
        return (self.cfg.seed * 1_000_003 + batch * 997 + slot) % (2**31)

    def autocast(self):
        return autocast(self.cfg.precision, self.device, self.cfg.allow_cpu_autocast)

    def run_fields(self) -> dict[str, Any]:
        """What run.json says of this run besides versions, timings and costs."""
        return {
            "name": self.cfg.name, "config": self.cfg.to_dict(), "device": str(self.device), "seed": self.cfg.seed,
            "model": {"name": self.model.name, "default_layer": default_layer(self.model),
                      "input_size": list(self.model.input_size)},
            "n_images": len(self.indices), "n_batches": self.n_batches,
            "protocols": {spec.key: m.resolved_protocol() for spec, m in self.metrics},
            "controls": [spec.key for spec, e in self.explainers if e.control],  # read by results/ (no saliency import)
            **self.chunks,
        }

    def metric_info(self) -> dict[str, dict[str, Any]]:
        """Direction, protocol and aggregates of every metric, its sub-scores and derived scores."""
        info = {spec.key: {"higher_is_better": m.higher_is_better, "protocol": m.resolved_protocol(),
                           "class_mean": m.class_mean, "dataset": m.dataset_aggregate()} for spec, m in self.metrics}
        for spec, m in self.metrics:  # sub-scores (road_combined:morf, …) whose direction differs
            for extra, hib in m.extra_directions.items():
                info[f"{spec.key}:{extra}"] = {**info[spec.key], "higher_is_better": hib, "class_mean": None,
                                               "dataset": None}
        for d in self.derived():
            info[d.name] = {"higher_is_better": d.higher_is_better, "protocol": {"definition": d.definition}}
        return info

    def workload(self, batches: list[int]) -> dict[str, list[int]]:
        """Images each plug-in ("explainer/<key>", "metric/<key>") will take in each of `batches`
        (within the explainer's and the metric's `limit`; annotations not yet known): how the
        progress display weighs what is left."""
        all_batches, inf = self.batches(), math.inf
        out: dict[str, list[int]] = {}
        for spec, _ in self.explainers:
            lim = inf if spec.limit is None else spec.limit
            out[f"explainer/{spec.key}"] = [sum(i < lim for i in all_batches[k]) for k in batches]
            for mspec, _ in self.metrics:
                mlim = min(lim, inf if mspec.limit is None else mspec.limit)
                counts = out.setdefault(f"metric/{mspec.key}", [0] * len(batches))
                for n, k in enumerate(batches):
                    counts[n] += sum(i < mlim for i in all_batches[k])
        return out

    def derived(self) -> list:
        """The derived scores (e.g. `overall`) the configured metrics allow, by display name."""
        return derived_scores([(spec.key, m) for spec, m in self.metrics])


def build_plan(cfg: RunConfig, run_dir: Path, device: torch.device | None = None, ranks: Ranks | None = None,
               resume: bool = False, steps: Steps | None = None) -> Plan:
    """Load the model and data, build every plug-in and choose `chunk_size: auto` — each step
    announced through `steps` (progress.Steps) when given."""
    ranks = ranks or Ranks()
    steps = steps or Steps(cfg.name, enabled=False)
    torch.manual_seed(cfg.seed)
    device = device or resolve_device(cfg.device)
    autocast(cfg.precision, device, cfg.allow_cpu_autocast)  # refuses bf16/fp16 off CUDA before any work
    with steps.step(f"loading model {cfg.model.name} on {device}"):
        model = cfg.model.load(device)
    if cfg.model.layer != "auto":
        model.default_layer = model.resolve_layer(cfg.model.layer)
    size = cfg.dataset.image_size or model.input_size[0]
    dataset = DATASETS.build(cfg.dataset.name, root=cfg.dataset.root, split=cfg.dataset.split, image_size=size,
                             **dataset_options(model, DATASETS.get(cfg.dataset.name).params, cfg.dataset.params))
    n = len(dataset) if cfg.dataset.limit is None else min(cfg.dataset.limit, len(dataset))
    if n == 0:
        raise DataError(f"dataset '{cfg.dataset.name}' ({cfg.dataset.root or 'built-in'}) has no images")
    check_classes(model, dataset, cfg.dataset.name)
    shape = (model.channels, size, size)
    # `chunk_size: auto` is chosen once, on rank 0 (or read back from run.json when resuming), and
    # used by every rank: a timed choice must not differ between the pieces of one run
    autos = [s.key for s in (*cfg.explainers, *cfg.metrics) if s.params.get("chunk_size") == "auto"]
    with steps.step(f"timing `chunk_size: auto` for {', '.join(autos)}", show=bool(autos)):
        chunks = ranks.share(choose_chunks, cfg, model, shape, run_dir if resume else None)
    sizes = chunks.get("chunk_sizes", {})

    def params(kind: str, spec: PluginSpec) -> dict:
        chosen = sizes.get(f"{kind}/{spec.key}")
        return {**spec.params, "chunk_size": chosen} if chosen is not None else spec.params

    explainers = [(s, build_sized(EXPLAINERS, s.name, params("explainer", s), model, shape, True,
                                  cfg.memory_budget_gb)) for s in cfg.explainers]
    metrics = [(s, build_sized(METRICS, s.name, params("metric", s), model, shape, False, cfg.memory_budget_gb))
               for s in cfg.metrics]
    for spec, explainer in explainers:
        if "layer" in spec.params or hasattr(explainer, "layer"):
            model.resolve_layer(getattr(explainer, "layer", "auto"))  # bad layer names fail now
    return Plan(cfg, run_dir, device, model, dataset, list(range(n)), explainers, metrics, chunks=chunks)


def choose_chunks(cfg: RunConfig, model: ModelAdapter, shape: tuple[int, ...], resumed: Path | None) -> dict:
    """The `chunk_size: auto` choices (memory.auto_chunk_sizes), or a resumed run's from its run.json."""
    recorded = rundir.recorded(resumed, ("chunk_sizes", "chunk_probe")) if resumed is not None else {}
    if "chunk_sizes" in recorded:
        return recorded
    plugins = [("explainer", EXPLAINERS, cfg.explainers, True), ("metric", METRICS, cfg.metrics, False)]
    return auto_chunk_sizes(plugins, model, shape, cfg.memory_budget_gb)

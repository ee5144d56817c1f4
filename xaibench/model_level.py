"""The model-level part of a run, once per run after the batches: probes (feature purity, neuron
similarity) and activation maximization, each written to the store and skipped when resumed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader

from .datasets import Batch, collate
from .datasets.base import IndexedDataset
from .memory import build_sized
from .probes import PROBES
from .results import store
from .results.provenance import Cost

if TYPE_CHECKING:
    from .runner import Plan

PROBE_SLOT = 50_000  # a probe's seed slot: PROBE_SLOT + its index (see runner.call_seed)


def data_batches(plan: Plan, on_device: bool = True) -> Iterator[Batch]:
    """The run's images as `Batch`es (pixel space), skipping unreadable images — for probes."""
    loader = DataLoader(IndexedDataset(plan.dataset, plan.indices), batch_size=plan.cfg.dataset.batch_size,
                        num_workers=plan.cfg.dataset.num_workers, collate_fn=collate)
    for batch in loader:
        keep = [i for i, e in enumerate(batch.errors) if not e]
        if not keep:
            continue
        if len(keep) < len(batch.ids):
            idx = torch.tensor(keep)
            batch = Batch(batch.images[idx], batch.labels[idx], [batch.ids[i] for i in keep], batch.index[idx],
                          [batch.boxes[i] for i in keep], batch.masks[idx] if batch.masks is not None else None,
                          [None] * len(keep))
        yield batch.to(plan.device) if on_device else batch


def run_probes(plan: Plan) -> None:
    """Model-level probes, once per run; each writes its tables as CSV and into the store."""
    for slot, spec in enumerate(plan.cfg.probes):
        folder = plan.run_dir / "probes" / spec.name
        if (plan.run_dir / store.PARTIAL / f"probe_{spec.name}.npz").exists():
            continue
        size = plan.cfg.dataset.image_size or plan.model.input_size[0]
        probe = build_sized(PROBES, spec.name, spec.params, plan.model, (plan.model.channels, size, size), True,
                            plan.cfg.memory_budget_gb)
        torch.manual_seed(plan.seed_for(0, PROBE_SLOT + slot))
        t0 = time.perf_counter()
        before = plan.model.counter.snapshot()
        tables = probe(plan.model, data_batches(plan))
        plan.costs.setdefault(f"probe/{spec.name}", Cost()).add(time.perf_counter() - t0, len(plan.indices),
                                                                plan.model.counter.since(before))
        store.write_probe(plan.run_dir, spec.name, tables)
        if plan.cfg.output.figures:
            from .results import probe_figures

            probe_figures.plot(spec.name, tables, folder)


def run_featviz(plan: Plan) -> None:
    """Activation maximization (`featviz:` section), written under featviz/ and into the store."""
    if plan.cfg.featviz is None or (plan.run_dir / store.PARTIAL / "probe_featviz.npz").exists():
        return
    from .featviz import FeatvizParams, run_visualize

    result = run_visualize(plan.model, FeatvizParams(**plan.cfg.featviz), plan.run_dir / "featviz")
    store.write_probe(plan.run_dir, "featviz", result.arrays(), csv_folder=plan.run_dir / "featviz", marker="featviz")

"""The benchmark loop: the only place that knows models, data, explainers, metrics and storage.

Batches the dataset on the chosen device, runs every explainer and metric on each batch, writes
each finished batch atomically (so `--resume` continues exactly), then assembles the results.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from . import model_level
from .config import PluginSpec, RunConfig, load
from .datasets import Batch, collate
from .datasets.base import IndexedDataset
from .devices import resolve_device
from .distributed import Ranks
from .errors import DataError, PluginError
from .metrics.ordering import image_seeds
from .models.fit import check_labels
from .plan import Plan, build_plan
from .progress import Progress, Steps
from .results import keys, provenance, rundir, store, tables
from .results.provenance import Cost
from .saliency import Explainer

# Global-RNG seeds of the plug-in calls: (run seed, batch, slot) → seed (`Plan.seed_for`). Slots: an
# explainer's own index; a metric's METRIC_SLOT + 100 · explainer index + metric index; a probe's
# model_level.PROBE_SLOT + its index.
METRIC_SLOT = 10_000
NONFINITE_MAP = "the map is not finite (NaN or inf): every metric scores it NaN"



def run(
    config: str | Path | RunConfig | dict,
    overrides: list[str] | tuple[str, ...] = (),
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> Path:
    """Run a benchmark config; return the run folder (docs/architecture.md "The flow of data")."""
    cfg = config if isinstance(config, RunConfig) else load(config, overrides)
    ranks = Ranks.from_env()
    device = ranks.device(resolve_device(cfg.device))
    ranks.start(device)
    try:
        run_dir = ranks.share(rundir.prepare, cfg.output.dir, cfg.name, cfg.to_dict(), out, resume)
        if resume and rundir.recorded(run_dir, ("status",)).get("status") == "complete":
            if progress and ranks.is_main:
                print(f"[{cfg.name}] {run_dir} is already complete: nothing to resume", file=sys.stderr)
            return run_dir
        run_dir.mkdir(parents=True, exist_ok=True)  # other nodes may not share rank 0's filesystem
        steps = Steps(cfg.name, enabled=progress and ranks.is_main)
        plan = build_plan(cfg, run_dir, device, ranks, resume, steps)
        with plan.model.inference():  # eval mode, frozen parameters; the module is restored after the run
            return execute(plan, ranks, progress, steps)
    finally:
        ranks.stop()


def execute(plan: Plan, ranks: Ranks, progress: bool, steps: Steps | None = None) -> Path:
    """Compute this rank's batches, then (rank 0) probes, featviz, assembly, figures."""
    steps = steps or Steps(plan.cfg.name, enabled=False)
    cfg, run_dir = plan.cfg, plan.run_dir
    started = time.perf_counter()
    if ranks.is_main:
        provenance.write_run_json(run_dir, "running", plan.run_fields(), plan.costs, wall=0.0)
    files = store.BatchFiles(run_dir)
    done = files.done()
    todo = ranks.shard([k for k in range(plan.n_batches) if k not in done])
    all_batches = plan.batches()
    loader = DataLoader(IndexedDataset(plan.dataset), batch_sampler=[all_batches[k] for k in todo],
                        num_workers=cfg.dataset.num_workers, collate_fn=collate)
    shown = Progress(cfg.name, len(todo), [spec.key for spec, _ in plan.explainers], progress and ranks.is_main,
                     workload=plan.workload(todo), costs=plan.costs)
    try:
        for k, batch in zip(todo, loader, strict=True):
            files.write(k, process_batch(plan, k, batch, shown))
            shown.batch_done(k)
    finally:
        shown.close()
    ranks.barrier()
    ranks.gather_files(files, plan.n_batches)
    if not ranks.is_main:
        return run_dir
    with steps.step("model-level probes", show=bool(cfg.probes)):
        model_level.run_probes(plan)
    with steps.step("activation maximization", show=cfg.featviz is not None):
        model_level.run_featviz(plan)
    with steps.step("writing results.h5, scores.csv, summary.csv"):
        store.assemble(run_dir, plan.n_batches, plan.metric_info(), provenance.h5_attrs(cfg.to_yaml()), cfg.seed,
                       plan.derived())
        store.add_extras_to_h5(run_dir)
        store.write_errors(run_dir)
    probe_costs = {name: c for name, c in plan.costs.items() if name.startswith("probe/")}
    costs, wall = provenance.batch_costs(files, probe_costs), time.perf_counter() - started
    provenance.write_run_json(run_dir, "complete", plan.run_fields(), costs, wall=wall, world=ranks.world)
    with steps.step("statistics (stats/)"):
        tables.write_tables(run_dir)  # rank groups, pairwise tests, per class, agreement, reliability
    shown.summary(costs, wall)
    if cfg.output.figures:
        from .results import report

        with steps.step("figures (figures/)"):
            report.make_figures(run_dir)
    files.remove()  # every batch is in results.h5 now; a resume of a complete run does nothing
    return run_dir



def process_batch(plan: Plan, k: int, batch: Batch, progress: Progress) -> dict[str, np.ndarray]:
    """Explain and score one batch; return its arrays for the batch file."""
    return BatchWork(plan, k, batch).run(progress)


class BatchWork:
    """One batch of a run: its inputs, targets and validity, and the arrays it produces."""

    def __init__(self, plan: Plan, k: int, batch: Batch):
        self.plan, self.k, self.batch = plan, k, batch
        self.errors = [e or "" for e in batch.errors]
        if plan.cfg.on_error == "fail" and any(self.errors):
            i = next(i for i, e in enumerate(self.errors) if e)
            raise DataError(f"image {batch.ids[i]} failed: {self.errors[i]} (on_error: fail)")
        if plan.cfg.target == "label":
            check_labels(plan.model, batch.labels.tolist(), batch.ids)
        self.on_device = batch.to(plan.device)
        self.x = plan.model.normalize(self.on_device.images)
        self.index = batch.index.numpy()
        self.arrays: dict[str, np.ndarray] = {}

    def run(self, progress: Progress) -> dict[str, np.ndarray]:
        plan, cfg = self.plan, self.plan.cfg
        before = {name: c.totals() for name, c in plan.costs.items()}
        with torch.no_grad(), plan.autocast():
            logits = plan.model(self.x).float()
        finite = torch.isfinite(logits).all(1).cpu().numpy()
        for i in np.flatnonzero(~finite):
            self.errors[i] = self.errors[i] or "model output is not finite (NaN/inf logits)"
        self.valid = np.array([not e for e in self.errors])
        pred = logits.argmax(1)
        self.target = self.on_device.labels if cfg.target == "label" else pred
        self.arrays.update({
            keys.INDEX: self.index,
            keys.sample("id"): np.array(self.batch.ids, dtype=str),
            keys.sample("label"): self.batch.labels.numpy(),
            keys.sample("target"): np.where(self.valid, self.target.cpu().numpy(), -1),
            keys.sample("pred"): np.where(self.valid, pred.cpu().numpy(), -1),
            keys.sample("error"): np.array(self.errors, dtype=str),
        })
        if self.k == 0:
            self.arrays.update(store.preview_arrays(self.batch.images, self.batch.boxes, self.batch.masks))
        if cfg.output.save_maps:
            self.arrays.update(store.thumbnail_arrays(self.batch.images, self.batch.boxes, self.batch.masks))
        for slot, (spec, explainer) in enumerate(plan.explainers):
            progress.start(spec.key)
            progress.done(spec.key, self.explain(slot, spec, explainer))
        for name, cost in plan.costs.items():
            self.arrays[keys.cost(name)] = cost.totals() - before.get(name, 0.0)  # this batch's share
        return self.arrays

    def explain(self, slot: int, spec: PluginSpec, explainer: Explainer) -> int:
        """Explain the valid images within the explainer's limit, then score them with every metric;
        return how many images that was."""
        sel = self.valid & (self.index < spec.limit if spec.limit is not None else True)
        if not sel.any():
            return 0
        rows = torch.from_numpy(np.flatnonzero(sel)).to(self.plan.device)
        xs, ts = self.x[rows], self.target[rows]
        torch.manual_seed(self.plan.seed_for(self.k, slot))
        maps = self.attempt(lambda: timed(self.plan, f"explainer/{spec.key}",
                                          lambda: explainer(self.plan.model, xs, ts), len(rows)), sel, spec.key)
        if maps is None:  # failed (on_error: skip): so are its metrics on these rows
            self.arrays.update({keys.status(spec.key, m.key): np.where(sel, -2, 0).astype(np.int8)
                                for m, _ in self.plan.metrics})
            return 0
        if self.plan.cfg.output.save_maps:
            self.arrays[keys.map_key(spec.key)] = self.full(sel, maps)
        for key, value in explainer.diagnostics.items():
            self.arrays[keys.diagnostic(spec.key, key)] = self.full(sel, value)
        nonfinite = np.zeros_like(sel)  # a NaN/inf map earns nothing: errors.csv, NaN for every metric
        nonfinite[sel] = (~torch.isfinite(maps).flatten(1).all(1)).cpu().numpy()
        if nonfinite.any():
            self.arrays[keys.failure(spec.key)] = np.where(nonfinite, NONFINITE_MAP, "")
        for mslot, (mspec, metric) in enumerate(self.plan.metrics):
            seed = self.plan.seed_for(self.k, METRIC_SLOT + slot * 100 + mslot)
            self.score(spec, explainer, mspec, metric, sel, nonfinite, xs, ts, maps, seed)
        return len(rows)

    def attempt(self, fn, rows: np.ndarray, explainer: str, metric: str | None = None):
        """`fn()` of a plug-in on `rows`. If it raises, `on_error: fail` stops the run naming the plug-in
        and the batch (`--resume` recomputes the batch); `skip` records the reason for `rows`, → None."""
        try:
            return fn()
        except Exception as e:  # any plug-in failure; KeyboardInterrupt and SystemExit pass through
            reason = f"{type(e).__name__}: {e}"
            if self.plan.cfg.on_error == "fail":
                what = f"explainer '{explainer}'" if metric is None else f"metric '{metric}' on {explainer}'s maps"
                ids = ", ".join(str(self.batch.ids[i]) for i in np.flatnonzero(rows)[:4])
                raise PluginError(f"{what} failed on batch {self.k} (images {ids}{', …' if rows.sum() > 4 else ''}): "
                                  f"{reason}. on_error: fail stops the run; fix the cause and continue it with "
                                  f"`xai run CONFIG --out {self.plan.run_dir} --resume`") from e
            self.arrays[keys.failure(explainer, metric)] = np.where(rows, f"{reason} (batch {self.k})", "")
            return None

    def full(self, rows: np.ndarray, values: torch.Tensor) -> np.ndarray:
        """Per-image values of the selected `rows` as a float32 array over the whole batch (NaN elsewhere)."""
        out = np.full((len(self.index), *values.shape[1:]), np.nan, dtype=np.float32)
        out[rows] = values.detach().float().cpu().numpy()
        return out

    def score(self, spec, explainer, mspec, metric, sel, nonfinite, xs, ts, maps, seed: int) -> None:
        """Run one metric on the explained rows that have a finite map and the annotation it needs."""
        b = self.on_device
        status = np.zeros(len(self.index), dtype=np.int8)
        ok = metric.available(b.boxes, b.masks).numpy()
        status[sel & ~ok] = -1
        status[nonfinite] = keys.NONFINITE
        use = sel & ok & ~nonfinite
        if mspec.limit is not None:
            use &= self.index < mspec.limit
        if use.any():
            sub = torch.from_numpy(use[sel]).to(xs.device)  # the used rows among the explained ones
            rows = np.flatnonzero(use)
            ann: dict[str, Any] = {}
            if "boxes" in metric.needs or any(bx is not None for bx in b.boxes):
                ann["boxes"] = [b.boxes[i] for i in rows]
            if b.box_labels is not None:  # each box's class (VOC): the metric takes the target's boxes
                ann["box_labels"] = [b.box_labels[i] for i in rows]
            if b.masks is not None:
                ann["mask"] = b.masks[torch.from_numpy(rows).to(b.masks.device)]
            ann["labels"] = b.labels[torch.from_numpy(rows).to(b.labels.device)]  # whose boxes/masks they are
            seeds = image_seeds(self.plan.cfg.seed, [self.batch.ids[i] for i in rows])  # tie-breaks, per image
            torch.manual_seed(seed)
            res = self.attempt(lambda: timed(self.plan, f"metric/{mspec.key}", lambda: metric(
                self.plan.model, xs[sub], maps[sub], ts[sub], annotation=ann, explain=explainer, seeds=seeds),
                len(rows)), use, spec.key, mspec.key)
            status[use] = -2 if res is None else 1
            if res is not None and res.skipped is not None:  # the metric's own skips (e.g. empty region)
                status[rows[res.skipped.cpu().numpy().astype(bool)]] = -1
            for extra, values in ({} if res is None else {None: res.values, **res.extras}).items():
                self.arrays[keys.score(spec.key, mspec.key, extra)] = self.full(use, values)
            if res is not None and res.curves is not None:
                self.arrays[keys.curve(spec.key, mspec.key)] = self.full(use, res.curves)
        self.arrays[keys.status(spec.key, mspec.key)] = status


def timed(plan: Plan, name: str, fn, images: int):
    """Call `fn`, adding its wall time and model passes to the plan's cost of `name`."""
    before = plan.model.counter.snapshot()
    if plan.device.type == "cuda":
        torch.cuda.synchronize(plan.device)
    t0 = time.perf_counter()
    with plan.autocast():
        result = fn()
    if plan.device.type == "cuda":
        torch.cuda.synchronize(plan.device)
    plan.costs.setdefault(name, Cost()).add(time.perf_counter() - t0, images, plan.model.counter.since(before))
    return result

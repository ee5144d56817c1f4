"""The benchmark loop: the only place that knows models, data, explainers, metrics and storage.

Batches the dataset on the chosen device, runs every explainer and metric on each batch, writes
each finished batch atomically (so `--resume` continues exactly), then assembles the results.
"""

from __future__ import annotations

import contextlib
import json
import platform
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import __version__
from .config import PluginSpec, RunConfig, load
from .datasets import DATASETS, Batch, collate
from .datasets.base import IndexedDataset
from .distributed import Ranks
from .errors import ConfigError, DataError, OutputError
from .memory import build_sized
from .metrics import METRICS, ImageMetric
from .models import ModelAdapter, load_model
from .probes import PROBES
from .results import store
from .saliency import EXPLAINERS, Explainer


def resolve_device(name: str) -> torch.device:
    """`auto` → CUDA when present, else CPU; explicit names are checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"device: '{name}' is not a device. Valid: auto, cpu, cuda, cuda:N, mps") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: '{name}' asked for CUDA, but CUDA is not available here; use auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device: 'mps' is not available here; use auto or cpu")
    return device


def autocast(cfg: RunConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """Model forwards under autocast for bf16/fp16 on CUDA (maps and metric arithmetic stay fp32);
    on CPU only with `allow_cpu_autocast: true`."""
    if cfg.precision == "fp32":
        return contextlib.nullcontext()
    if device.type != "cuda" and not cfg.allow_cpu_autocast:
        raise ConfigError(f"precision: {cfg.precision} is for CUDA (this run is on {device}); use fp32, "
                          "or set allow_cpu_autocast: true to autocast on the CPU anyway")
    dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


@dataclass
class Cost:
    """Time and model passes spent by one plug-in over the run."""

    seconds: float = 0.0
    images: int = 0
    forward_images: int = 0
    backward_images: int = 0

    def add(self, seconds: float, images: int, passes: dict[str, int]) -> None:
        self.seconds += seconds
        self.images += images
        self.forward_images += passes["forward_images"]
        self.backward_images += passes["backward_images"]

    def totals(self) -> np.ndarray:
        return np.array([self.seconds, self.images, self.forward_images, self.backward_images], dtype=np.float64)

    def as_dict(self) -> dict[str, float]:
        per = max(self.images, 1)
        return dict(
            seconds=round(self.seconds, 4),
            images=self.images,
            seconds_per_image=self.seconds / per,
            forward_passes_per_image=self.forward_images / per,
            backward_passes_per_image=self.backward_images / per,
        )


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

    @property
    def n_batches(self) -> int:
        return (len(self.indices) + self.cfg.dataset.batch_size - 1) // self.cfg.dataset.batch_size

    def batches(self) -> list[list[int]]:
        bs = self.cfg.dataset.batch_size
        return [self.indices[i : i + bs] for i in range(0, len(self.indices), bs)]


def run(
    config: str | Path | RunConfig | dict,
    overrides: list[str] | tuple[str, ...] = (),
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> Path:
    """Run a benchmark config; return the run folder (DESIGN.md "The flow of data")."""
    cfg = config if isinstance(config, RunConfig) else load(config, overrides)
    ranks = Ranks.from_env()
    device = ranks.device(resolve_device(cfg.device))
    ranks.start(device)
    try:
        run_dir = ranks.share(prepare_run_dir, cfg, out, resume)
        run_dir.mkdir(parents=True, exist_ok=True)  # other nodes may not share rank 0's filesystem
        plan = build_plan(cfg, run_dir, device)
        return execute(plan, ranks, progress)
    finally:
        ranks.stop()


def execute(plan: Plan, ranks: Ranks, progress: bool) -> Path:
    """Compute this rank's batches, then (rank 0) probes, featviz, assembly, figures."""
    cfg, run_dir = plan.cfg, plan.run_dir
    started = time.perf_counter()
    if ranks.is_main:
        write_run_json(plan, status="running", wall=0.0)
    files = store.BatchFiles(run_dir)
    done = files.done()
    todo = ranks.shard([k for k in range(plan.n_batches) if k not in done])
    all_batches = plan.batches()
    loader = DataLoader(
        IndexedDataset(plan.dataset),
        batch_sampler=[all_batches[k] for k in todo],
        num_workers=cfg.dataset.num_workers,
        collate_fn=collate,
    )
    show = progress and ranks.is_main
    bars = {  # one bar per explainer over the batches (they advance together, batch-major)
        spec.name: tqdm(total=len(todo), desc=f"{spec.name:>20}", position=i, unit="batch",
                        disable=not show, leave=True, dynamic_ncols=True)
        for i, (spec, _) in enumerate(plan.explainers)
    }
    try:
        for k, batch in zip(todo, loader, strict=True):
            files.write(k, process_batch(plan, k, batch, bars))
    finally:
        for bar in bars.values():
            bar.close()
    ranks.barrier()
    ranks.gather_files(files, plan.n_batches)
    if not ranks.is_main:
        return run_dir
    run_probes(plan, progress)
    run_featviz(plan)
    metric_info = {
        spec.name: {"higher_is_better": metric.higher_is_better, "protocol": metric.resolved_protocol()}
        for spec, metric in plan.metrics
    }
    for spec, metric in plan.metrics:  # sub-scores (road_combined:morf, …) whose direction differs
        for extra, hib in metric.extra_directions.items():
            metric_info[f"{spec.name}:{extra}"] = {**metric_info[spec.name], "higher_is_better": hib}
    if any(spec.name == "deletion" for spec, _ in plan.metrics) and any(s.name == "insertion" for s, _ in plan.metrics):
        metric_info["overall"] = {"higher_is_better": True, "protocol": {"definition": "insertion - deletion"}}
    store.assemble(run_dir, plan.n_batches, metric_info, h5_attrs(plan), cfg.seed)
    store.add_extras_to_h5(run_dir)
    write_errors(run_dir)
    write_run_json(plan, status="complete", wall=time.perf_counter() - started, world=ranks.world)
    if cfg.output.figures:
        from .results import report

        report.make_figures(run_dir)
    return run_dir


def prepare_run_dir(cfg: RunConfig, out: str | Path | None, resume: bool) -> Path:
    """The run folder: never overwrite a previous run; `resume` needs the same config."""
    if out is None:
        if resume:
            raise OutputError("--resume needs --out RUN_DIR naming the interrupted run")
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path(cfg.output.dir) / f"{cfg.name}-{stamp}"
    else:
        run_dir = Path(out)
    meta = run_dir / "run.json"
    if resume:
        if not meta.is_file():
            raise OutputError(f"cannot resume {run_dir}: it holds no run.json (not a run folder)")
        stored = json.loads(meta.read_text())["config"]
        if stored != json.loads(json.dumps(cfg.to_dict())):
            raise OutputError(f"cannot resume {run_dir}: its config differs from the one given; use the same config")
        return run_dir
    if run_dir.exists() and any(run_dir.iterdir()):
        raise OutputError(f"{run_dir} already exists and is not empty; a run never overwrites another. "
                          "Choose another --out, or continue it with --resume")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create run folder {run_dir}: {e.strerror or e}") from e
    return run_dir


def build_plan(cfg: RunConfig, run_dir: Path, device: torch.device | None = None) -> Plan:
    torch.manual_seed(cfg.seed)
    device = device or resolve_device(cfg.device)
    autocast(cfg, device)  # refuses bf16/fp16 off CUDA before any work
    model = load_model(cfg.model.name, cfg.model.weights).to(device)
    if cfg.model.layer != "auto":
        model.default_layer = model.resolve_layer(cfg.model.layer)
    size = cfg.dataset.image_size or model.input_size[0]
    dataset = DATASETS.build(cfg.dataset.name, root=cfg.dataset.root, split=cfg.dataset.split, image_size=size,
                             **cfg.dataset.params)
    n = len(dataset) if cfg.dataset.limit is None else min(cfg.dataset.limit, len(dataset))
    if n == 0:
        raise DataError(f"dataset '{cfg.dataset.name}' ({cfg.dataset.root or 'built-in'}) has no images")
    model.memory_budget_gb = cfg.memory_budget_gb
    shape = (model.channels, size, size)
    explainers = [(s, build_sized(EXPLAINERS, s.name, s.params, model, shape, backward=True))
                  for s in cfg.explainers]
    metrics = [(s, build_sized(METRICS, s.name, s.params, model, shape, backward=False)) for s in cfg.metrics]
    for spec, explainer in explainers:
        if "layer" in spec.params or hasattr(explainer, "layer"):
            model.resolve_layer(getattr(explainer, "layer", "auto"))  # bad layer names fail now
    return Plan(cfg, run_dir, device, model, dataset, list(range(n)), explainers, metrics)


def _seed_for(cfg: RunConfig, k: int, slot: int) -> int:
    return (cfg.seed * 1_000_003 + k * 997 + slot) % (2**31)


def process_batch(plan: Plan, k: int, batch: Batch, bars: dict[str, tqdm]) -> dict[str, np.ndarray]:
    """Explain and score one batch; return its arrays for the batch file."""
    cfg, model = plan.cfg, plan.model
    before = {name: c.totals() for name, c in plan.costs.items()}
    errors = [e or "" for e in batch.errors]
    if cfg.on_error == "fail" and any(errors):
        raise DataError(f"image {batch.ids[errors.index(next(e for e in errors if e))]} failed: "
                        f"{next(e for e in errors if e)} (on_error: fail)")
    b = batch.to(plan.device)
    x = model.normalize(b.images)
    with torch.no_grad(), autocast(cfg, plan.device):
        logits = model(x).float()
    finite = torch.isfinite(logits).all(1).cpu().numpy()
    for i in np.flatnonzero(~finite):
        errors[i] = errors[i] or "model output is not finite (NaN/inf logits)"
    valid = np.array([not e for e in errors])
    pred = logits.argmax(1)
    target = b.labels if cfg.target == "label" else pred
    index = batch.index.numpy()
    arrays: dict[str, np.ndarray] = {
        "index": index,
        "samples/id": np.array(batch.ids, dtype=str),
        "samples/label": batch.labels.numpy(),
        "samples/target": np.where(valid, target.cpu().numpy(), -1),
        "samples/pred": np.where(valid, pred.cpu().numpy(), -1),
        "samples/error": np.array(errors, dtype=str),
    }
    if k == 0:
        arrays.update(preview(batch))
    for slot, (spec, explainer) in enumerate(plan.explainers):
        sel = valid & (index < spec.limit if spec.limit is not None else True)
        if sel.any():
            rows = torch.from_numpy(np.flatnonzero(sel)).to(plan.device)
            xs, ts = x[rows], target[rows]
            torch.manual_seed(_seed_for(cfg, k, slot))
            maps = timed(plan, f"explainer/{spec.name}", lambda: explainer(model, xs, ts), len(rows))
            full = np.full((len(index), *maps.shape[1:]), np.nan, dtype=np.float32)
            full[sel] = maps.detach().float().cpu().numpy()
            if cfg.output.save_maps:
                arrays[f"maps/{spec.name}"] = full
            for key, value in explainer.diagnostics.items():
                diag = np.full(len(index), np.nan, dtype=np.float32)
                diag[sel] = value.detach().float().cpu().numpy()
                arrays[f"diagnostics/{spec.name}/{key}"] = diag
            for mslot, (mspec, metric) in enumerate(plan.metrics):
                arrays.update(score(plan, k, slot * 100 + mslot, spec, explainer, mspec, metric, b, xs, ts, maps, sel))
        bars[spec.name].update(1)
    for name, cost in plan.costs.items():
        arrays[f"cost/{name}"] = cost.totals() - before.get(name, 0.0)  # this batch's share
    return arrays


PREVIEW = 8


def preview(batch: Batch) -> dict[str, np.ndarray]:
    """The first images of the run (uint8) with their boxes/masks, so figures need no dataset."""
    p = min(PREVIEW, len(batch.ids))
    out = {"preview/images": (batch.images[:p].clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy(),
           "preview/rows": np.arange(p)}
    kmax = max((len(b) for b in batch.boxes[:p] if b is not None), default=0)
    if kmax:
        boxes = np.full((p, kmax, 4), np.nan, dtype=np.float32)
        for i, b in enumerate(batch.boxes[:p]):
            if b is not None and len(b):
                boxes[i, : len(b)] = b.cpu().numpy()
        out["preview/boxes"] = boxes
    if batch.masks is not None:
        out["preview/masks"] = batch.masks[:p].cpu().numpy()
    return out


def annotation_available(metric: ImageMetric, batch: Batch) -> np.ndarray:
    ok = np.ones(len(batch.ids), dtype=bool)
    if "boxes" in metric.needs:
        ok &= np.array([bx is not None and len(bx) > 0 for bx in batch.boxes])
    if "mask" in metric.needs:
        ok &= batch.masks.flatten(1).any(1).cpu().numpy() if batch.masks is not None else False
    return ok


def score(plan, k, slot, spec, explainer, mspec, metric, b: Batch, xs, ts, maps, sel) -> dict[str, np.ndarray]:
    """Run one metric on the explained rows that have the annotation it needs."""
    n = len(b.ids)
    status = np.zeros(n, dtype=np.int8)
    ok = annotation_available(metric, b)
    status[sel & ~ok] = -1
    use = sel & ok
    out: dict[str, np.ndarray] = {}
    if mspec.limit is not None:
        use &= b.index.numpy() < mspec.limit
    if use.any():
        sub = torch.from_numpy(use[sel]).to(xs.device)  # the used rows among the explained ones
        rows = np.flatnonzero(use)
        ann: dict[str, Any] = {}
        if "boxes" in metric.needs or any(bx is not None for bx in b.boxes):
            ann["boxes"] = [b.boxes[i] for i in rows]
        if b.masks is not None:
            ann["mask"] = b.masks[torch.from_numpy(rows).to(b.masks.device)]
        torch.manual_seed(_seed_for(plan.cfg, k, 10_000 + slot))
        res = timed(plan, f"metric/{mspec.name}", lambda: metric(plan.model, xs[sub], maps[sub], ts[sub], annotation=ann,
                                                                  explain=explainer), len(rows))
        status[use] = 1
        values = np.full(n, np.nan, dtype=np.float32)
        values[use] = res.values.detach().float().cpu().numpy()
        out[f"scores/{spec.name}/{mspec.name}"] = values
        for key, extra in res.extras.items():
            v = np.full(n, np.nan, dtype=np.float32)
            v[use] = extra.detach().float().cpu().numpy()
            out[f"scores/{spec.name}/{mspec.name}:{key}"] = v
        if res.curves is not None:
            c = np.full((n, res.curves.shape[1]), np.nan, dtype=np.float32)
            c[use] = res.curves.detach().float().cpu().numpy()
            out[f"curves/{spec.name}/{mspec.name}"] = c
    out[f"status/{spec.name}/{mspec.name}"] = status
    return out


def timed(plan: Plan, name: str, fn, images: int):
    """Call `fn`, adding its wall time and model passes to the plan's cost of `name`."""
    before = plan.model.counter.snapshot()
    if plan.device.type == "cuda":
        torch.cuda.synchronize(plan.device)
    t0 = time.perf_counter()
    with autocast(plan.cfg, plan.device):
        result = fn()
    if plan.device.type == "cuda":
        torch.cuda.synchronize(plan.device)
    plan.costs.setdefault(name, Cost()).add(time.perf_counter() - t0, images, plan.model.counter.since(before))
    return result


def data_batches(plan: Plan, on_device: bool = True):
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


def run_probes(plan: Plan, progress: bool) -> None:
    """Model-level probes, once per run; each writes its tables as CSV and into the store."""
    for slot, spec in enumerate(plan.cfg.probes):
        folder = plan.run_dir / "probes" / spec.name
        marker = plan.run_dir / store.PARTIAL / f"probe_{spec.name}.npz"
        if marker.exists():
            continue
        size = plan.cfg.dataset.image_size or plan.model.input_size[0]
        probe = build_sized(PROBES, spec.name, spec.params, plan.model, (plan.model.channels, size, size), True)
        torch.manual_seed(_seed_for(plan.cfg, 0, 50_000 + slot))
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
    if plan.cfg.featviz is None or (plan.run_dir / store.PARTIAL / "featviz.npz").exists():
        return
    from .featviz import FeatvizParams, run_visualize

    result = run_visualize(plan.model, FeatvizParams(**plan.cfg.featviz), plan.run_dir / "featviz")
    store.write_probe(plan.run_dir, "featviz", result.arrays(), csv_folder=plan.run_dir / "featviz", marker="featviz")


def h5_attrs(plan: Plan) -> dict[str, str]:
    return {"config": plan.cfg.to_yaml(), "versions": json.dumps(versions()), "xaibench": __version__}


def versions() -> dict[str, str]:
    import h5py
    import torchvision

    out = {"python": platform.python_version(), "xaibench": __version__, "torch": torch.__version__,
           "torchvision": torchvision.__version__, "numpy": np.__version__, "h5py": h5py.__version__}
    try:
        import zennit

        out["zennit"] = getattr(zennit, "__version__", "unknown")
    except ImportError:
        pass
    return out


def git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return res.stdout.strip() or None if res.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def write_run_json(plan: Plan, status: str, wall: float, world: int = 1) -> None:
    """run.json: resolved config, versions, commit, device, seed, timings and pass counters."""
    costs = _batch_costs(store.BatchFiles(plan.run_dir), plan) if status == "complete" else plan.costs
    meta = {
        "status": status,
        "name": plan.cfg.name,
        "config": plan.cfg.to_dict(),
        "versions": versions(),
        "git_commit": git_commit(),
        "device": str(plan.device),
        "seed": plan.cfg.seed,
        "model": {"name": plan.model.name, "default_layer": plan.model.resolve_layer("auto"),
                  "input_size": list(plan.model.input_size)},
        "n_images": len(plan.indices),
        "n_batches": plan.n_batches,
        "wall_seconds": round(wall, 3),
        "processes": world,
        "costs": {name: c.as_dict() for name, c in sorted(costs.items())},
        "protocols": {spec.name: m.resolved_protocol() for spec, m in plan.metrics},
    }
    store.atomic_write(plan.run_dir / "run.json", json.dumps(meta, indent=2, default=str))


def _batch_costs(files: store.BatchFiles, plan: Plan) -> dict[str, Cost]:
    """Per-plug-in cost summed over every batch file (so a resumed run counts all its batches)."""
    totals: dict[str, Cost] = {}
    for k in sorted(files.done()):
        for key, d in files.read(k).items():
            if key.startswith("cost/"):
                totals.setdefault(key[len("cost/"):], Cost()).add(
                    float(d[0]), int(d[1]), {"forward_images": int(d[2]), "backward_images": int(d[3])})
    for name, c in plan.costs.items():
        if name.startswith("probe/"):
            totals[name] = c
    return totals


def write_errors(run_dir: Path) -> None:
    """errors.csv: every image that was skipped, with the reason."""
    import h5py
    import pandas as pd

    with h5py.File(run_dir / "results.h5", "r") as h5:
        ids = h5["samples/id"].asstr()[:] if "samples/id" in h5 else np.array([], dtype=object)
        err = h5["samples/error"].asstr()[:] if "samples/error" in h5 else np.array([""] * len(ids), dtype=object)
        index = np.arange(len(ids))
    bad = np.array([bool(e) for e in err], dtype=bool)
    df = pd.DataFrame({"index": index[bad], "id": ids[bad], "error": err[bad]})
    store.atomic_write(run_dir / "errors.csv", df.to_csv(index=False))

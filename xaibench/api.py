"""The public Python API (docs/architecture.md "Python API"): what notebooks, other tools and the CLI call.

Names are registry names (`xai list`); parameters are each plug-in's typed parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from .models.adapter import ModelAdapter
from .models.zoo import load_model as _load_model


def load_model(name: str, weights: str | None = "default", **options: Any) -> ModelAdapter:
    """A zoo model (`torchvision:resnet18`, `timm:resnet18`, `python:my_net.py:build`, `hf:folder`,
    `torchscript:model.pt`, `builtin:synthetic-cnn`, …) wrapped in a ModelAdapter; `options`: `params`
    (the factory's keyword arguments), `mean`, `std`, `input_size`, `class_names`, `score`."""
    return _load_model(name, weights, **options)


def _targets(target: Tensor | int | Sequence[int], n: int, device: torch.device) -> Tensor:
    t = torch.as_tensor(target, dtype=torch.long, device=device)
    return t.expand(n).clone() if t.dim() == 0 else t


def explain(model: ModelAdapter, x: Tensor, target: Tensor | int | Sequence[int], name: str, **params: Any) -> Tensor:
    """(B,H,W) float32 maps of explainer `name` for model-input batch `x` and targets."""
    from .memory import build_sized
    from .saliency import EXPLAINERS

    with model.inference():  # the caller's module is restored on exit (modes, requires_grad flags)
        explainer = build_sized(EXPLAINERS, name, params, model, tuple(x.shape[1:]), backward=True)
        return explainer(model, x, _targets(target, x.shape[0], x.device))


def evaluate(model: ModelAdapter, x: Tensor, maps: Tensor, target: Tensor | int | Sequence[int], name: str,
             annotation: dict[str, Any] | None = None, explain: Any = None, seeds: Tensor | None = None,
             **params: Any):
    """Score `maps` with metric `name` → MetricResult(values (B,), curves (B,T) or None, extras).
    `seeds` (B,) int64 key each image's tie-breaks (docs/metrics.md "Ties"); None: the batch position."""
    from .memory import build_sized
    from .metrics import METRICS

    with model.inference():
        metric = build_sized(METRICS, name, params, model, tuple(x.shape[1:]), backward=False)
        return metric(model, x, maps, _targets(target, x.shape[0], x.device), annotation=annotation, explain=explain,
                      seeds=seeds)


def probe(model: ModelAdapter, batches: Iterable[Any], name: str, **params: Any) -> dict[str, Any]:
    """Run model-level probe `name` (feature_purity, neuron_similarity) over batches of images."""
    from .probes import PROBES

    with model.inference():
        return PROBES.build(name, **params)(model, batches)


def visualize(model: ModelAdapter, targets: Sequence[int], objective: str = "class", steps: int = 256, **params: Any):
    """Activation maximization with pyramid preconditioning (docs/methods.md §Pyramid activation maximization)."""
    from . import featviz

    with model.inference():
        return featviz.visualize(model, targets, objective=objective, steps=steps, **params)


def run(config: str | Path | dict, overrides: Sequence[str] = (), out: str | Path | None = None,
        resume: bool = False, progress: bool = True) -> Path:
    """Run a benchmark config (YAML path or dict); return the run folder."""
    from .runner import run as _run

    return _run(config, list(overrides), out=out, resume=resume, progress=progress)


def compare(runs: Sequence[str | Path], sort: str | None = None) -> pd.DataFrame:
    """Leaderboard over run folders (or parents of run folders) as a long DataFrame."""
    from .results.compare import leaderboard

    return leaderboard(list(runs), sort)


# ---------------------------------------------------------------------------------------------- CLI support
def validate(config: str | Path | dict, overrides: Sequence[str] = ()):
    """Load a config and build every plug-in it names (names, types and ranges checked) without
    loading a model or data; return the RunConfig. Raises ConfigError naming the key."""
    from .config import load

    return load(config, list(overrides))


def is_main_process() -> bool:
    """False on the ranks of a `torchrun` launch other than rank 0 (which holds the merged files)."""
    from .distributed import Ranks

    return Ranks.from_env().is_main


def registries() -> dict[str, Any]:
    """The plug-in registries by kind: explainers, metrics, probes, models, datasets."""
    from .datasets import DATASETS
    from .metrics import METRICS
    from .models import MODELS
    from .probes import PROBES
    from .saliency import EXPLAINERS

    return {"explainers": EXPLAINERS, "metrics": METRICS, "probes": PROBES, "models": MODELS, "datasets": DATASETS}


def describe(kind: str, model: str | None = None, weights: str = "none"
             ) -> list[tuple[str, str, list[tuple[str, str, str, str]]]]:
    """Every plug-in of `kind`: (name, one-line doc, [(parameter, type, default, help)]); the help
    ends with the parameter's valid range when it has one, e.g. `(>= 1)`. With `model` (explainers
    only), each doc starts with whether the explainer applies to that model."""
    import dataclasses

    from .errors import ConfigError, unknown
    from .registry import bound_text, type_name

    regs = registries()
    if kind not in regs:
        raise ConfigError(unknown("kind", kind, [*regs, "layers"]))
    if model is not None and kind != "explainers":
        raise ConfigError(f"--model goes with `xai list explainers` or `xai list layers`, not with {kind}")
    reg = regs[kind]
    adapter = load_model(model, weights=weights) if model is not None else None
    out = []
    for name in reg.names():
        entry = reg.get(name)
        ranges = {p: f" ({bound_text(b)})" for p, b in entry.bounds.items()}
        params = [(p, type_name(tp), "(required)" if default is dataclasses.MISSING else repr(default),
                   entry.help.get(p, "") + ranges.get(p, "")) for p, (tp, default) in entry.params.items()]
        if not params and not dataclasses.is_dataclass(entry.obj):
            params = signature_params(entry.obj)
        doc = entry.doc
        if adapter is not None:
            from .saliency.base import unmet_needs

            problem = unmet_needs(entry.obj, adapter)
            doc = f"[does not apply: {problem}] {doc}" if problem else f"[applies] {doc}"
        out.append((name, doc, params))
    return out


def signature_params(fn: Any) -> list[tuple[str, str, str, str]]:
    """(parameter, type, default, help) of a factory function's keyword parameters (help from
    `Annotated[type, "help"]`); `**options` is listed as such. `arch` and internal ones are left out."""
    import inspect
    import typing

    from .registry import type_name

    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # noqa: BLE001 - unresolvable annotations: names only
        hints = {}
    out = []
    for p in inspect.signature(fn).parameters.values():
        if p.name in ("arch", "preprocessing") or p.name.startswith("_"):
            continue
        tp = hints.get(p.name, Any)
        extras = getattr(tp, "__metadata__", ())
        base = typing.get_args(tp)[0] if extras else tp
        help_text = next((str(m) for m in extras if isinstance(m, str)), "")
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            out.append((f"**{p.name}", "any", "", help_text))
        else:
            default = "(required)" if p.default is inspect.Parameter.empty else repr(p.default)
            out.append((p.name, type_name(base), default, help_text))
    return out


def layers(model: str) -> tuple[list[tuple[str, str]], str]:
    """The named layers of a zoo model (name, module type — for a token layer also how it becomes a
    map: `tokens 1+14×14`, `channels-last 7×7`) and the name `auto` resolves to (or why there is
    none: a TorchScript model)."""
    from .errors import LayerError
    from .models.token_layers import trace

    m = load_model(model, weights="none")
    try:
        auto = m.resolve_layer("auto")
    except LayerError as e:
        auto = f"(no auto layer: {e})"
    layouts = {t.name: t.layout for t in trace(m) if t.layout is not None} if m.hookable else {}

    def kind(name: str, mod) -> str:
        lay = layouts.get(name)
        if lay is None:
            return type(mod).__name__
        grid = f"{lay.grid[0]}×{lay.grid[1]}"
        return f"{type(mod).__name__}  [{'tokens ' + str(lay.prefix) + '+' if lay.kind == 'tokens' else 'channels-last '}{grid}]"

    return [(name, kind(name, mod)) for name, mod in m.layers().items()], auto


def leaderboard(runs: Sequence[str | Path], sort: str | None = None, fmt: str = "table", headline: bool = False,
                metrics: Sequence[str] | None = None, by: str | None = None, meta: bool = False,
                alpha: float = 0.05) -> str:
    """The leaderboard over run folders rendered as `table` | `csv` | `markdown` | `json`: means with
    rank groups, paired differences, control margins (docs/metrics.md "Leaderboard statistics");
    `headline` drops sub-scores (`box_iou:hit`, …); `by="class"` the per-class table; `meta` the
    metrics' agreement and reliability instead."""
    from .errors import ConfigError
    from .results import compare, render

    render.check_format(fmt)
    loaded = compare.load(runs)
    if meta:
        return render.render_meta(*compare.meta_tables(runs, metrics, alpha, runs=loaded), fmt)
    if by is not None:
        if by != "class":
            raise ConfigError(f"--by: unknown '{by}'. Valid: class")
        return render.render_by_class(compare.class_table(runs, metrics, runs=loaded), fmt)
    df = compare.leaderboard(runs, sort, metrics, alpha, runs=loaded)
    if headline:
        df = compare.headline(df)
        if sort is None and (df["metric"] == "overall").any():
            sort = "overall"
    return render.render(df, fmt, sort, alpha)


def check(runs: Sequence[str | Path], baseline: str | Path, tolerance_se: float = 3.0,
          tolerance: Sequence[str] | dict[str, float] | None = None, min_n_fraction: float = 0.9):
    """The CI gate: runs against a baseline summary.csv → CheckResult (`passed`, `reasons`, `table`);
    `tolerance` holds absolute per-metric tolerances (`deletion=0.01`), other metrics use
    `tolerance_se` × the baseline's standard error (docs/metrics.md "The CI gate")."""
    from .results.gate import check as gate

    return gate(list(runs), baseline, tolerance_se, tolerance, min_n_fraction)


def check_table(result) -> str:
    """What changed in a CheckResult, as a text table."""
    from .results.gate import render_check

    return render_check(result)


def report(run_dir: str | Path, html: bool = True) -> list[Path]:
    """Regenerate a run's statistics tables (stats/) and figures from its files alone (no model
    needed) and, with `html`, write its self-contained `report.html`; return the files."""
    from .results.report import make_figures
    from .results.tables import write_tables

    written = [*write_tables(run_dir), *make_figures(run_dir)]
    if html:
        from .report import render_run

        written.append(render_run(run_dir))
    return written


def compare_html(runs: Sequence[str | Path], out: str | Path) -> Path:
    """Write the self-contained comparison page of several runs (side by side, differences per
    explainer and metric, protocol checks) to `out`; return its path."""
    from .report import render_comparison

    return render_comparison(list(runs), out)


def visualize_config(config: str | Path, overrides: Sequence[str] = (), out: str | Path | None = None):
    """`xai visualize`: activation maximization of a config's `featviz:` section, written to `out`
    (default: a new folder `<output.dir>/<name>-featviz-<timestamp>`) → (folder, VizResult)."""
    from .devices import resolve_device
    from .errors import ConfigError
    from .featviz import FeatvizParams, run_visualize
    from .results import rundir

    cfg = validate(config, overrides)
    if cfg.featviz is None:
        raise ConfigError(f"{config} has no `featviz:` section (see configs/examples/featviz.yaml)")
    folder = rundir.given_folder(out) if out is not None else rundir.new_folder(cfg.output.dir, f"{cfg.name}-featviz")
    model = cfg.model.load(resolve_device(cfg.device))
    return folder, run_visualize(model, FeatvizParams.from_dict(cfg.featviz), folder)


def explain_files(paths: Sequence[str | Path], model: str, weights: str, names: Sequence[str],
                  target: int | None, out: str | Path) -> list[tuple[Path, int, str, float]]:
    """`xai explain`: explain image files with each explainer of `names` (the top-1 class unless
    `target`), write an overlay figure to `out`; return (file, class, class name, probability) each."""
    from .datasets.imagefiles import read_image_file
    from .results.report import overlay_grid

    m = load_model(model, weights)
    pixels = torch.stack([read_image_file(Path(p), m.input_size[0]) for p in paths])
    x = m.normalize(pixels)
    with torch.no_grad():
        probs = m(x).softmax(1)
    t = torch.full((len(paths),), target) if target is not None else probs.argmax(1)
    maps = {name: explain(m, x, t, name).numpy() for name in names}
    overlay_grid((pixels.permute(0, 2, 3, 1).numpy() * 255).astype("uint8"), maps, [str(int(c)) for c in t], Path(out))
    return [(Path(p), int(t[i]), m.class_names[int(t[i])] if m.class_names else str(int(t[i])), float(probs[i, t[i]]))
            for i, p in enumerate(paths)]

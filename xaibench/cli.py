"""The `xai` command line: a thin typer layer over `xaibench.api`.

User mistakes (XaiError) are printed without a traceback and exit with status 2.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated

import typer

from .errors import XaiError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Benchmark saliency explainers for image classifiers.")


def user_errors(fn):
    """Print XaiErrors as one line on stderr and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except XaiError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None

    return wrapper


SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a key: --set dataset.limit=64 (value parsed as YAML).")]


@app.command()
@user_errors
def run(
    config: Annotated[Path, typer.Argument(help="YAML config file.")],
    set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run folder (default results/<name>-<timestamp>).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars, no leaderboard.")] = False,
) -> None:
    """Run a benchmark: explain and score the dataset, write HDF5 + CSV, print the leaderboard."""
    from . import api
    from .distributed import Ranks
    from .results.compare import headline, leaderboard, render

    run_dir = api.run(config, set_ or [], out=out, resume=resume, progress=not quiet)
    if not quiet and Ranks.from_env().is_main:  # under torchrun only rank 0 holds the merged files
        board = headline(leaderboard([run_dir]))
        typer.echo(f"\nrun folder: {run_dir}")
        typer.echo(render(board, "table", sort="overall" if (board["metric"] == "overall").any() else None))
        typer.echo(f"sub-scores, n and protocols: {run_dir / 'summary.csv'}; figures: {run_dir / 'figures'}")


@app.command()
@user_errors
def validate(config: Annotated[Path, typer.Argument(help="YAML config file.")], set_: SetOpt = None) -> None:
    """Check a config (keys, types, plug-in names and parameters) without running it."""
    from .config import load

    cfg = load(config, set_ or [])
    typer.echo(f"{config}: valid ({len(cfg.explainers)} explainers, {len(cfg.metrics)} metrics, {len(cfg.probes)} probes)")


@app.command()
@user_errors
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run folders, or folders holding run folders.")],
    sort: Annotated[str | None, typer.Option(help="Sort rows by this metric (its own direction).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table | csv | markdown | json")] = "table",
    check: Annotated[Path | None, typer.Option(help="Baseline summary.csv: exit 1 on a regression.")] = None,
    tolerance: Annotated[float, typer.Option(help="Allowed worsening (absolute) before --check fails.")] = 0.02,
) -> None:
    """Leaderboard over runs; with --check, fail (exit 1) when a metric regressed past the tolerance."""
    from .results.compare import check as check_runs
    from .results.compare import leaderboard, render

    if check is not None:
        regressions, missing = check_runs(list(runs), check, tolerance)
        for name in missing:
            typer.echo(f"missing from the run: {name}", err=True)
        if regressions:
            typer.echo(f"{len(regressions)} regression(s) beyond tolerance {tolerance}:", err=True)
            for r in regressions:
                typer.echo(f"  {r}", err=True)
            raise typer.Exit(1)
        if missing:
            raise typer.Exit(1)
        typer.echo(f"no regression beyond tolerance {tolerance} against {check}")
        return
    typer.echo(render(leaderboard(list(runs), sort), fmt, sort))


@app.command("list")
@user_errors
def list_(
    kind: Annotated[str, typer.Argument(help="explainers | metrics | probes | models | datasets | layers")],
    model: Annotated[str, typer.Option(help="With `layers`: the model whose layers to list.")] = "builtin:synthetic-cnn",
) -> None:
    """List what is registered, with each parameter and its default."""
    from .errors import ConfigError, unknown
    from .registry import type_name

    registries = _registries()
    if kind == "layers":
        from .api import load_model

        m = load_model(model, weights="none")
        auto = m.resolve_layer("auto")
        for name, mod in m.layers().items():
            typer.echo(f"{name:<40} {type(mod).__name__}{'   <- auto' if name == auto else ''}")
        return
    if kind not in registries:
        raise ConfigError(unknown("kind", kind, [*registries, "layers"]))
    reg = registries[kind]
    for name in reg.names():
        entry = reg.get(name)
        typer.echo(f"{name}: {entry.doc}")
        for p, (tp, default) in entry.params.items():
            shown = "(required)" if default.__class__.__name__ == "_MISSING_TYPE" else repr(default)
            typer.echo(f"    {p}: {type_name(tp)} = {shown}")


def _registries() -> dict:
    from .datasets import DATASETS
    from .metrics import METRICS
    from .models import MODELS
    from .probes import PROBES
    from .saliency import EXPLAINERS

    return {"explainers": EXPLAINERS, "metrics": METRICS, "probes": PROBES, "models": MODELS, "datasets": DATASETS}


@app.command()
@user_errors
def report(run_dir: Annotated[Path, typer.Argument(help="A finished run folder.")]) -> None:
    """Regenerate a run's figures from results.h5 alone (no model needed)."""
    from .results.report import make_figures

    for path in make_figures(run_dir):
        typer.echo(str(path))


@app.command()
@user_errors
def visualize(
    config: Annotated[Path, typer.Argument(help="YAML config with a `featviz:` section.")],
    set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default results/<name>-featviz-<timestamp>).")] = None,
) -> None:
    """Activation maximization with pyramid preconditioning: PNGs, grid, objective CSV."""
    from datetime import datetime

    from .config import load
    from .devices import resolve_device
    from .errors import ConfigError, OutputError
    from .featviz import FeatvizParams, run_visualize
    from .models import load_model

    cfg = load(config, set_ or [])
    if cfg.featviz is None:
        raise ConfigError(f"{config} has no `featviz:` section (see configs/examples/featviz.yaml)")
    folder = out or Path(cfg.output.dir) / f"{cfg.name}-featviz-{datetime.now():%Y%m%d-%H%M%S}"
    if folder.exists() and any(folder.iterdir()):
        raise OutputError(f"{folder} already exists and is not empty; choose another --out")
    model = load_model(cfg.model.name, cfg.model.weights).to(resolve_device(cfg.device))
    result = run_visualize(model, FeatvizParams.from_dict(cfg.featviz), folder)
    typer.echo(f"wrote {folder}")
    if getattr(result, "final_prob", None) is not None:
        for t, p in zip(result.targets, result.final_prob.tolist()):
            typer.echo(f"  target {t}: final probability {p:.3f}")


@app.command()
@user_errors
def explain(
    images: Annotated[list[Path], typer.Argument(help="Image files to explain.")],
    model: Annotated[str, typer.Option(help="Zoo name (xai list models).")] = "builtin:synthetic-cnn",
    weights: Annotated[str, typer.Option(help="default | none | path/to/file.pt | torchvision enum name.")] = "default",
    explainer: Annotated[list[str] | None, typer.Option("--explainer", "-e", help="Explainer name; repeat for several.")] = None,
    target: Annotated[int | None, typer.Option(help="Class to explain (default: the top-1 prediction).")] = None,
    out: Annotated[Path, typer.Option(help="Overlay figure to write.")] = Path("explain.png"),
) -> None:
    """Explain a few image files with one or more explainers; write an overlay figure."""
    import torch

    from . import api
    from .datasets.imagefiles import read_rgb, resize_crop
    from .errors import DataError
    from .results.report import overlay_grid

    names = explainer or ["gradcam"]
    m = api.load_model(model, weights)
    pixels = []
    for path in images:
        if not path.is_file():
            raise DataError(f"image not found: {path}")
        im, err = read_rgb(path)
        if im is None:
            raise DataError(err)
        pixels.append(resize_crop(im, m.input_size[0])[0])
    x = m.normalize(torch.stack(pixels))
    with torch.no_grad():
        probs = m(x).softmax(1)
    t = torch.full((len(images),), target) if target is not None else probs.argmax(1)
    maps = {name: api.explain(m, x, t, name).numpy() for name in names}
    for i, path in enumerate(images):
        cls = int(t[i])
        label = m.class_names[cls] if m.class_names else str(cls)
        typer.echo(f"{path}: explaining class {cls} ({label}), p = {probs[i, cls]:.3f}")
    overlay_grid((torch.stack(pixels).permute(0, 2, 3, 1).numpy() * 255).astype("uint8"), maps,
                 [str(int(c)) for c in t], out)
    typer.echo(f"wrote {out}")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())

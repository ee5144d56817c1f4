"""The `xai` command line: a thin typer layer over `xaibench.api` (it imports nothing else but errors).

User mistakes (XaiError) are printed without a traceback and exit with status 2.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated

import typer

from . import api
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


def command(name: str | None = None):
    """Register an `xai` sub-command whose user errors print as one line and exit 2."""
    return lambda fn: app.command(name)(user_errors(fn))


ConfigArg = Annotated[Path, typer.Argument(help="YAML config file.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a key: --set dataset.limit=64 (value parsed as YAML).")]


@command()
def run(
    config: ConfigArg,
    set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run folder (default results/<name>-<timestamp>).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars, no leaderboard.")] = False,
) -> None:
    """Run a benchmark: explain and score the dataset, write HDF5 + CSV, print the leaderboard."""
    run_dir = api.run(config, set_ or [], out=out, resume=resume, progress=not quiet)
    if not quiet and api.is_main_process():  # under torchrun only rank 0 holds the merged files
        typer.echo(f"\nrun folder: {run_dir}")
        typer.echo(api.leaderboard([run_dir], headline=True))
        typer.echo(f"sub-scores, n and protocols: {run_dir / 'summary.csv'}; figures: {run_dir / 'figures'}")


@command()
def validate(config: ConfigArg, set_: SetOpt = None) -> None:
    """Check a config (keys, types, ranges, plug-in names and parameters) without running it."""
    cfg = api.validate(config, set_ or [])
    typer.echo(f"{config}: valid ({len(cfg.explainers)} explainers, {len(cfg.metrics)} metrics, {len(cfg.probes)} probes)")


@command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run folders, or folders holding run folders.")],
    sort: Annotated[str | None, typer.Option(help="Sort rows by this metric (its own direction).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table | csv | markdown | json")] = "table",
    check: Annotated[Path | None, typer.Option(help="Baseline summary.csv: exit 1 on a regression.")] = None,
    tolerance: Annotated[float, typer.Option(help="Allowed worsening (absolute) before --check fails.")] = 0.02,
) -> None:
    """Leaderboard over runs; with --check, fail (exit 1) when a metric regressed past the tolerance."""
    if check is None:
        typer.echo(api.leaderboard(runs, sort, fmt))
        return
    regressions, missing = api.check(runs, check, tolerance)
    for name in missing:
        typer.echo(f"missing from the run: {name}", err=True)
    if regressions:
        typer.echo(f"{len(regressions)} regression(s) beyond tolerance {tolerance}:", err=True)
        for r in regressions:
            typer.echo(f"  {r}", err=True)
    if regressions or missing:
        raise typer.Exit(1)
    typer.echo(f"no regression beyond tolerance {tolerance} against {check}")


@command("list")
def list_(
    kind: Annotated[str, typer.Argument(help="explainers | metrics | probes | models | datasets | layers")],
    model: Annotated[str | None, typer.Option(
        help="With `layers`: the model whose layers to list (default builtin:synthetic-cnn); with `explainers`: "
             "say which explainers apply to this model.")] = None,
    weights: Annotated[str, typer.Option(help="Weights of --model (none: random, enough to inspect it).")] = "none",
) -> None:
    """List what is registered, with each parameter, its type, default and help."""
    if kind == "layers":
        names, auto = api.layers(model or "builtin:synthetic-cnn")
        for name, kind_name in names:
            typer.echo(f"{name:<40} {kind_name}{'   <- auto' if name == auto else ''}")
        if auto not in dict(names):
            typer.echo(auto)
        return
    for name, doc, params in api.describe(kind, model, weights):
        typer.echo(f"{name}: {doc}")
        for param, tp, default, help_text in params:
            typer.echo(f"    {param}: {tp}" + (f" = {default}" if default else "") + (f"  — {help_text}" if help_text else ""))


@command()
def report(run_dir: Annotated[Path, typer.Argument(help="A finished run folder.")]) -> None:
    """Regenerate a run's figures from results.h5 alone (no model needed)."""
    for path in api.report(run_dir):
        typer.echo(str(path))


@command()
def visualize(
    config: ConfigArg, set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default results/<name>-featviz-<timestamp>).")] = None,
) -> None:
    """Activation maximization of the config's `featviz:` section: PNGs, grid, objective CSV."""
    folder, result = api.visualize_config(config, set_ or [], out)
    typer.echo(f"wrote {folder}")
    if getattr(result, "final_prob", None) is not None:
        for t, p in zip(result.targets, result.final_prob.tolist()):
            typer.echo(f"  target {t}: final probability {p:.3f}")


@command()
def explain(
    images: Annotated[list[Path], typer.Argument(help="Image files to explain.")],
    model: Annotated[str, typer.Option(help="Zoo name (xai list models).")] = "builtin:synthetic-cnn",
    weights: Annotated[str, typer.Option(help="default | none | path/to/file.pt | torchvision enum name.")] = "default",
    explainer: Annotated[list[str] | None, typer.Option("--explainer", "-e", help="Explainer name; repeat for several.")] = None,
    target: Annotated[int | None, typer.Option(help="Class to explain (default: the top-1 prediction).")] = None,
    out: Annotated[Path, typer.Option(help="Overlay figure to write.")] = Path("explain.png"),
) -> None:
    """Explain a few image files with one or more explainers; write an overlay figure."""
    for path, cls, label, prob in api.explain_files(images, model, weights, explainer or ["gradcam"], target, out):
        typer.echo(f"{path}: explaining class {cls} ({label}), p = {prob:.3f}")
    typer.echo(f"wrote {out}")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())

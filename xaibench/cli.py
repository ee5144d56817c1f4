"""The `xai` command line: a thin typer layer over `xaibench.api` (it imports nothing else but errors).

User mistakes (XaiError) are printed without a traceback and exit with status 2.
"""

from __future__ import annotations

import functools
import sys
import warnings
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
        typer.echo(with_warnings(api.leaderboard, [run_dir], headline=True))
        typer.echo(f"sub-scores, n and protocols: {run_dir / 'summary.csv'}; figures: {run_dir / 'figures'}")
        typer.echo(f"paired statistics: {run_dir / 'stats'}; which metrics agree and are reliable: "
                   f"xai compare {run_dir} --meta; per class: --by class")


@command()
def validate(config: ConfigArg, set_: SetOpt = None) -> None:
    """Check a config (keys, types, ranges, plug-in names and parameters) without running it."""
    cfg = api.validate(config, set_ or [])
    typer.echo(f"{config}: valid ({len(cfg.explainers)} explainers, {len(cfg.metrics)} metrics, {len(cfg.probes)} probes)")


@command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run folders, or folders holding run folders.")],
    sort: Annotated[str | None, typer.Option(help="Sort rows by this metric's rank groups and ranks.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table | csv | markdown | json")] = "table",
    metric: Annotated[list[str] | None, typer.Option("--metric", "-m", help="Only this metric; repeat for several.")] = None,
    by: Annotated[str | None, typer.Option(help="class: per-class means and ranks, one table per metric.")] = None,
    meta: Annotated[bool, typer.Option("--meta", help="The metrics' agreement (Kendall τ) and reliability instead.")] = False,
    alpha: Annotated[float, typer.Option(help="Significance level of the rank groups (Holm-adjusted).")] = 0.05,
    check: Annotated[Path | None, typer.Option(help="Baseline summary.csv: exit 1 when the run fails the gate.")] = None,
    tolerance_se: Annotated[float, typer.Option(
        help="--check: allowed worsening as a multiple of the baseline's standard error of the mean.")] = 3.0,
    tolerance: Annotated[list[str] | None, typer.Option(
        help="--check: absolute tolerance of one metric, METRIC=VALUE (e.g. deletion=0.01); repeat.")] = None,
    min_n_fraction: Annotated[float, typer.Option(
        help="--check: fail when an (explainer, metric)'s n fell below this fraction of the baseline's.")] = 0.9,
    html: Annotated[Path | None, typer.Option(help="Also write a self-contained HTML comparison page here.")] = None,
) -> None:
    """Leaderboard over runs with rank groups; --by class, --meta; with --check, the CI gate (exit 1
    when a baseline pair is missing, n fell, a protocol changed or a mean got worse beyond tolerance);
    --html also writes the comparison page (runs side by side, differences, protocol checks)."""
    if html is not None:
        typer.echo(f"wrote {api.compare_html(runs, html)}", err=True)
    if check is None:
        typer.echo(with_warnings(api.leaderboard, runs, sort, fmt, metrics=metric, by=by, meta=meta, alpha=alpha))
        return
    result = with_warnings(api.check, runs, check, tolerance_se, tolerance, min_n_fraction)
    typer.echo(api.check_table(result))
    if not result.passed:
        typer.echo(f"\nFAILED against {check}: {len(result.reasons)} reason(s)", err=True)
        for reason in result.reasons:
            typer.echo(f"  {reason}", err=True)
        raise typer.Exit(1)
    how = ", ".join(sorted(set(result.tolerances.values()))) or "—"
    typer.echo(f"\npassed against {check} (tolerances: {how})")


def with_warnings(fn, *args, **kwargs):
    """Call fn, printing its warnings as 'warning: …' lines on stderr (no file and line noise)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    for w in caught:
        if not issubclass(w.category, DeprecationWarning):
            typer.echo(f"warning: {w.message}", err=True)
    return out


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
def report(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder.")],
    html: Annotated[bool, typer.Option("--html/--no-html", help="Also write the self-contained report.html.")] = True,
) -> None:
    """Regenerate a run's statistics tables (stats/) and figures, and write its report.html, from its
    files alone (no model needed)."""
    for path in api.report(run_dir, html):
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

"""`report.html` of one run: header, leaderboard, map grid, worst images, curves, probes and featviz,
rendered with Jinja2 into one self-contained file (images, styles and scripts inlined).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..results.report import leaderboard_shades
from ..results.store import atomic_write
from ..version import __version__
from . import images
from .rundata import Arrays, RunData, load_arrays, load_run, worst_rows

GRID_ROWS = 24  # images in the map grid
WORST = 8  # worst images per (explainer, metric)
CURVE_ROWS = 200  # images whose per-image curves are embedded
TABLE_ROWS = 40  # rows shown of a probe/featviz table
# summary.csv columns the leaderboard cell already shows; any other column is shown generically
SHOWN = {"explainer", "metric", "mean", "std", "n", "n_skipped", "ci_low", "ci_high", "higher_is_better", "protocol",
         "group", "rank_group"}


def environment():
    """The Jinja2 environment over the package's templates (autoescaping on)."""
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("xaibench.report", "templates"),
                              autoescape=jinja2.select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)


def fmt(v: Any, digits: int = 4) -> str:
    """A number for a table cell ('—' for missing)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return f"{float(v):.{digits}g}"


def sort_value(v: Any) -> str:
    """The `data-v` a sortable cell sorts by: the number, or '' for missing (sorted last)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return repr(f) if math.isfinite(f) else ""


def leaderboard(run: RunData) -> dict[str, Any]:
    """Rows (one per explainer) × metric columns: mean ± CI half-width, rank shade, rank group and any
    other summary.csv column; controls marked; cost columns from run.json."""
    s = run.summary
    metrics = list(dict.fromkeys(s["metric"]))
    metrics.sort(key=lambda m: (":" in m, m))  # headline metrics first, sub-scores after
    explainers = list(dict.fromkeys(list(s["explainer"]) + run.explainers))
    hib = {m: run.direction(m) for m in metrics}
    means = s.pivot_table(index="explainer", columns="metric", values="mean", aggfunc="first").reindex(
        index=explainers, columns=metrics)
    shades = leaderboard_shades(means, pd.Series(hib)) if len(metrics) else means
    extra_cols = [c for c in s.columns if c not in SHOWN]
    cells = {(r.explainer, r.metric): r for r in s.itertuples(index=False)}
    rows = []
    for e in explainers:
        row_cells = []
        for m in metrics:
            r = cells.get((e, m))
            if r is None:
                row_cells.append(dict(text="—", v="", shade=None, title="not measured", sub=":" in m))
                continue
            r = r._asdict()
            half = (r.get("ci_high", math.nan) - r.get("ci_low", math.nan)) / 2
            text = fmt(r["mean"]) + (f" ± {fmt(half, 2)}" if math.isfinite(half) else "")
            title = [f"n={fmt(r.get('n'))}", f"std={fmt(r.get('std'))}"]
            if r.get("n_skipped"):
                title.append(f"skipped={fmt(r.get('n_skipped'))}")
            title += [f"{c}={r[c]}" for c in extra_cols if c in r and not pd.isna(r[c])]
            shade = shades.at[e, m]
            row_cells.append(dict(text=text, v=sort_value(r["mean"]), shade=None if pd.isna(shade) else round(float(shade), 3),
                                  group=rank_group(r),
                                  title="; ".join(title), sub=":" in m))
        cost = run.costs(e) or {}
        costs = [cost.get(k) for k in ("seconds_per_image", "forward_passes_per_image", "backward_passes_per_image")]
        rows.append(dict(explainer=e, control=run.is_control(e), cells=row_cells,
                         costs=[dict(text=fmt(c, 3), v=sort_value(c)) for c in costs]))
    columns = [dict(name=m, arrow="↑" if hib[m] else "↓", better="higher" if hib[m] else "lower", sub=":" in m)
               for m in metrics]
    return dict(columns=columns, rows=rows, has_groups=bool({"group", "rank_group"} & set(s.columns)),
                extra_columns=extra_cols)


def rank_group(row: dict[str, Any]) -> Any:
    """The row's rank group (summary.csv `group`, or `rank_group`), None when it has none."""
    for col in ("group", "rank_group"):
        if col in row and not pd.isna(row[col]) and str(row[col]) != "":
            value = row[col]
            return int(value) if isinstance(value, float) and value.is_integer() else value  # 1, not 1.0
    return None


def header(run: RunData) -> dict[str, Any]:
    """Model, dataset, sizes, versions, commit, device, wall time and the errors count."""
    meta, cfg = run.meta, run.meta.get("config", {})
    model = meta.get("model", {}).get("name") or cfg.get("model", {}).get("name", "?")
    ds = cfg.get("dataset", {})
    return dict(name=run.name, model=model, dataset=f"{ds.get('name', '?')} ({ds.get('split', '')})".replace(" ()", ""),
                n_images=meta.get("n_images", run.n_images), device=meta.get("device", "?"),
                wall=fmt(meta.get("wall_seconds"), 4), commit=meta.get("git_commit") or "—",
                status=meta.get("status", "?"), versions=run.versions or meta.get("versions", {}),
                config=run.config_yaml, n_errors=len(run.errors), seed=meta.get("seed", "—"),
                folder=str(run.folder))


def grid_rows(arr: Arrays, n: int = GRID_ROWS) -> np.ndarray:
    """The map grid's images: the first `n` valid rows with an image, at most a third of them from
    one class when there are several (so the class filter has something to show)."""
    valid = [r for r in arr.image_rows if arr.target[r] >= 0]
    per_class: dict[int, int] = {}
    cap = max(n // 3, 1) if len(set(arr.label[valid].tolist())) > 1 else n
    chosen = []
    for r in valid:
        c = int(arr.label[r])
        if per_class.get(c, 0) < cap:
            chosen.append(r)
            per_class[c] = per_class.get(c, 0) + 1
        if len(chosen) == n:
            break
    return np.array(sorted(chosen), dtype=np.int64)


def pictures(run: RunData, arr: Arrays) -> dict[str, Any]:
    """The map grid and the worst images: one data URI per (explainer, image) shown, shared by both."""
    if not len(arr.image_rows):
        return dict(grid=None, worst={}, uris={}, images={}, ids={})
    grid = grid_rows(arr)
    worst: dict[str, dict[str, list[list[float]]]] = {}
    need: dict[str, set[int]] = {e: set(grid.tolist()) for e in run.explainers}
    have_image = set(arr.image_rows.tolist())
    for e, per in arr.scores.items():
        for m, values in per.items():
            rows = [int(r) for r in worst_rows(values, run.direction(m), WORST) if r in have_image]
            worst.setdefault(e, {})[m] = [[r, round(float(values[r]), 4)] for r in rows]
            need.setdefault(e, set()).update(rows)
    shown = arr.images(np.array(sorted(set().union(*need.values())), dtype=np.int64))
    uris: dict[str, str] = {}
    for e, rows in need.items():
        order = np.array(sorted(r for r in rows if r in shown), dtype=np.int64)
        maps = arr.maps(e, order)
        if maps is None:
            continue
        for sal, r in zip(maps, order):
            if np.isfinite(sal).any():
                image, truth = shown[int(r)]
                uris[f"{e}|{r}"] = images.data_uri(images.overlay(image, sal, truth))
    plain = {r: images.data_uri(images.overlay(image, None, truth)) for r, (image, truth) in shown.items()}
    grid_info = [dict(row=int(r), id=str(arr.ids[r]), label=int(arr.label[r]), target=int(arr.target[r]),
                      image=plain[int(r)]) for r in grid]
    return dict(grid=grid_info, worst=worst, uris=uris, images={str(r): u for r, u in plain.items()},
                ids={str(r): str(arr.ids[r]) for r in plain})


def curve_data(arr: Arrays) -> dict[str, Any]:
    """Per-image deletion/insertion curves of the first CURVE_ROWS scored images, for the chooser."""
    out: dict[str, dict[str, dict[str, list[float]]]] = {}
    rows: set[int] = set()
    for e, per in arr.curves.items():
        for kind, c in per.items():
            finite = np.flatnonzero(np.isfinite(c).all(1))[:CURVE_ROWS]
            out.setdefault(kind, {})[e] = {str(int(r)): np.round(c[r], 4).tolist() for r in finite}
            rows.update(int(r) for r in finite)
    return dict(curves=out, rows=[dict(row=r, id=str(arr.ids[r]), label=int(arr.label[r])) for r in sorted(rows)])


def table_html(df: pd.DataFrame) -> dict[str, Any]:
    """A DataFrame as a sortable table's columns and rows (the first TABLE_ROWS)."""
    head = df.head(TABLE_ROWS)
    return dict(columns=[str(c) for c in head.columns], n=len(df),
                rows=[[dict(text=fmt(v) if isinstance(v, (float, np.floating, int, np.integer)) else str(v), v=sort_value(v))
                       for v in row] for row in head.itertuples(index=False)])


def extra_sections(run: RunData) -> list[dict[str, Any]]:
    """Probes (probes/<name>/) and featviz (featviz/): their tables and figures, when the run has them."""
    out = []
    folders = sorted(p for p in (run.folder / "probes").glob("*") if p.is_dir()) if (run.folder / "probes").is_dir() else []
    folders += [run.folder / name for name in ("stats", "featviz") if (run.folder / name).is_dir()]
    for folder in folders:
        tables = [dict(name=p.stem, **table_html(pd.read_csv(p))) for p in sorted(folder.glob("*.csv"))]
        figures = [dict(name=p.stem, uri=images.png_file_uri(p.read_bytes())) for p in sorted(folder.glob("*.png"))]
        kind = folder.name if folder.name in ("stats", "featviz") else "probe"
        out.append(dict(name=folder.name, kind=kind, tables=tables, figures=figures))
    return out


def render_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write `report.html` (or `out`) for a run folder from its files alone; return its path."""
    run = load_run(run_dir)
    arr = load_arrays(run)
    pics = pictures(run, arr)
    curves = curve_data(arr)
    payload = dict(worst=pics["worst"], uris=pics["uris"], images=pics["images"], ids=pics["ids"],
                   curves=curves["curves"])
    context = dict(
        title=f"xaibench report — {run.name}", version=__version__, header=header(run), board=leaderboard(run),
        pics=pics, classes=sorted({g["label"] for g in pics["grid"]}) if pics["grid"] else [],
        metrics=run.metrics, explainers=run.explainers, curves_svg=images.curve_bands_svg(arr.curves),
        curve_rows=curves["rows"], curve_kinds=sorted(curves["curves"]), extras=extra_sections(run),
        errors=table_html(run.errors) if len(run.errors) else None, data=to_json(payload),
    )
    html = environment().get_template("run.html.j2").render(**context)
    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    atomic_write(path, html)
    return path


def to_json(payload: Any) -> str:
    """JSON safe inside a <script> element (no `</` can close it)."""
    return json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")

"""The comparison page of several runs (`xai compare RUNS... --html OUT.html`): the runs side by side,
the difference per (explainer, metric) to the first run, and the run-to-run protocol checks.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from ..results.compare import find_runs, read_summary
from ..results.store import atomic_write
from ..version import __version__
from .page import environment, fmt, sort_value, to_json
from .rundata import is_control


def run_meta(run: Path) -> dict[str, Any]:
    """run.json of a run folder ({} for a bare summary.csv or a folder without one)."""
    path = run / "run.json"
    if run.suffix == ".csv" or not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def describe(run: Path, meta: dict[str, Any]) -> dict[str, Any]:
    cfg = meta.get("config", {})
    ds = cfg.get("dataset", {})
    return dict(name=run.stem if run.suffix == ".csv" else run.name, folder=str(run),
                model=meta.get("model", {}).get("name") or cfg.get("model", {}).get("name", "—"),
                dataset=ds.get("name", "—"), split=ds.get("split", "—"), n_images=meta.get("n_images", "—"),
                target=cfg.get("target", "—"), seed=meta.get("seed", "—"), device=meta.get("device", "—"),
                commit=(meta.get("git_commit") or "—")[:10], wall=fmt(meta.get("wall_seconds"), 4))


def protocol_diff(a: str, b: str) -> str:
    """The keys whose values differ between two protocol JSON strings, as `key: a → b`."""
    try:
        pa, pb = json.loads(a or "{}"), json.loads(b or "{}")
    except json.JSONDecodeError:
        return f"{a} → {b}"
    keys = sorted(k for k in set(pa) | set(pb) if pa.get(k) != pb.get(k))
    return ", ".join(f"{k}: {pa.get(k, '—')} → {pb.get(k, '—')}" for k in keys)


def checks(runs: list[dict[str, Any]], df: pd.DataFrame) -> list[dict[str, Any]]:
    """Run-to-run protocol checks: same dataset, split, image count and target mode, and per metric
    the same protocol (a difference makes that metric's numbers incomparable)."""
    out = []
    for field in ("dataset", "split", "n_images", "target"):
        values = [str(r[field]) for r in runs]
        same = len(set(values)) == 1
        out.append(dict(what=field, ok=same, detail=values[0] if same else " | ".join(values)))
    if "protocol" in df:
        first = runs[0]["name"]
        for metric, grp in df.groupby("metric", sort=True):
            per_run = grp.drop_duplicates("run").set_index("run")["protocol"].fillna("")
            if per_run.nunique() <= 1:
                continue
            ref = per_run.get(first, per_run.iloc[0])
            detail = "; ".join(f"{run}: {protocol_diff(ref, p)}" for run, p in per_run.items() if p != ref)
            out.append(dict(what=f"protocol of {metric}", ok=False, detail=detail))
        n_same = df["metric"].nunique() - sum(1 for c in out if c["what"].startswith("protocol"))
        out.append(dict(what="metric protocols", ok=True, detail=f"{n_same} metrics measured with the same protocol"))
    return out


def differences(df: pd.DataFrame, names: list[str]) -> dict[str, Any]:
    """Rows (explainer, metric): each run's mean ± CI half-width, and for every later run its
    difference to the first run, marked better/worse in the metric's direction when the CIs do not overlap."""
    rows = []
    for (explainer, metric), grp in df.groupby(["explainer", "metric"], sort=True):
        hib = bool(grp["higher_is_better"].iloc[0])
        per = grp.drop_duplicates("run").set_index("run")
        cells = []
        for name in names:
            if name not in per.index:
                cells.append(dict(text="—", v=""))
                continue
            r = per.loc[name]
            half = (r.get("ci_high", math.nan) - r.get("ci_low", math.nan)) / 2
            cells.append(dict(text=fmt(r["mean"]) + (f" ± {fmt(half, 2)}" if pd.notna(half) else ""), v=sort_value(r["mean"])))
        deltas = []
        for name in names[1:]:
            if name not in per.index or names[0] not in per.index:
                deltas.append(dict(text="—", v="", cls=""))
                continue
            a, b = per.loc[names[0]], per.loc[name]
            d = float(b["mean"] - a["mean"])
            apart = all(c in per for c in ("ci_low", "ci_high")) and pd.notna(a["ci_low"]) and pd.notna(b["ci_low"]) and (
                b["ci_low"] > a["ci_high"] or b["ci_high"] < a["ci_low"])
            cls = ("better" if (d > 0) == hib else "worse") if apart and d != 0 else ""
            deltas.append(dict(text=f"{d:+.4g}" if math.isfinite(d) else "—", v=sort_value(d), cls=cls))
        rows.append(dict(explainer=explainer, metric=metric, control=is_control(explainer), arrow="↑" if hib else "↓",
                         sub=":" in metric, cells=cells, deltas=deltas))
    return dict(rows=rows, runs=names, delta_names=[f"{n} − {names[0]}" for n in names[1:]])


def render_comparison(runs: list[str | Path], out: str | Path) -> Path:
    """Write the comparison page of `runs` (run folders, parents of run folders, or summary.csv files)."""
    folders = find_runs(list(runs))
    frames = [read_summary(r) for r in folders]
    df = pd.concat(frames, ignore_index=True)
    infos = [describe(r, run_meta(r)) for r in folders]
    names = [i["name"] for i in infos]
    if len(set(names)) < len(names):  # two runs with one folder name: tell them apart by position
        for i, (info, frame) in enumerate(zip(infos, frames)):
            info["name"] = f"{i + 1}:{info['name']}"
            frame["run"] = info["name"]
        df = pd.concat(frames, ignore_index=True)
        names = [i["name"] for i in infos]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = checks(infos, df)
    html = environment().get_template("compare.html.j2").render(
        title=f"xaibench comparison — {', '.join(names)}", version=__version__, runs=infos, checks=found,
        diff=differences(df, names), data=to_json({}))
    path = Path(out)
    atomic_write(path, html)
    return path

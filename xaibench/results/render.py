"""Text forms of the comparison tables (`xai compare`): the rank-group leaderboard with the control
margins, the per-class table and the meta-evaluation, as table | markdown | csv | json.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd

from ..errors import ConfigError

FORMATS = ("table", "markdown", "csv", "json")
LEGEND = ("mean (rank group): group 1 = not significantly different from the leader (paired Wilcoxon on shared "
          "images, Holm over all pairs, α = {alpha}); † fewer images (compared on the images shared); "
          "! not significantly better than every control")


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"--format: unknown '{fmt}'. Valid: {', '.join(FORMATS)}")


def _cell(mean: float, group: float, partial: object, beats: object) -> str:
    if pd.isna(mean):
        return "—"
    text = f"{mean:.4g}" + (f" ({int(group)})" if pd.notna(group) else "")
    return text + ("†" if partial is True or partial == 1 else "") + ("!" if beats is False else "")


def _order(df: pd.DataFrame, sort: str | None) -> list[str]:
    """Rows best first by the `sort` metric's group and rank, else alphabetical; controls last."""
    rows = sorted(df["row"].unique())
    if sort is not None:
        key = df[df["metric"] == sort].set_index("row")
        hib = bool(key["higher_is_better"].iloc[0]) if len(key) else True
        score = key["rank"] if "rank" in key else key["mean"] * (-1.0 if hib else 1.0)
        rows = sorted(rows, key=lambda r: (np.nan_to_num(score.get(r, np.inf), nan=np.inf), r))
    controls = set(df.loc[df["control"], "row"]) if "control" in df else set()
    return [r for r in rows if r not in controls] + [r for r in rows if r in controls]


def wide(df: pd.DataFrame, sort: str | None = None) -> pd.DataFrame:
    """Explainers (per run when several) × metrics, cells 'mean (group)' with † and ! marks."""
    df = df.copy()
    for col in ("group", "partial", "beats_controls"):
        if col not in df:
            df[col] = np.nan
    df["cell"] = [_cell(*v) for v in zip(df["mean"], df["group"], df["partial"], df["beats_controls"])]
    table = df.pivot_table(index="row", columns="metric", values="cell", aggfunc="first")
    table = table.reindex(index=_order(df, sort), columns=list(dict.fromkeys(df["metric"])))
    table.index.name = "explainer"
    table.columns.name = None
    return table.fillna("—")


def margins(df: pd.DataFrame, sort: str | None = None) -> pd.DataFrame | None:
    """Real explainers × metrics: the margin over the best control (+ = better), ! where the
    explainer is not significantly better than every control; None when no control ran."""
    if "margin" not in df or not df["control"].any():
        return None
    real = df[~df["control"]].copy()
    real["cell"] = [("—" if pd.isna(m) else f"{m:+.3g}" + ("!" if b is False else ""))
                    for m, b in zip(real["margin"], real["beats_controls"])]
    table = real.pivot_table(index="row", columns="metric", values="cell", aggfunc="first")
    table = table.reindex(index=_order(real, sort), columns=list(dict.fromkeys(real["metric"])))
    table.index.name = "explainer"
    table.columns.name = None
    return table.fillna("—")


def _text(table: pd.DataFrame, fmt: str, arrows: dict[str, str]) -> str:
    if fmt == "markdown":
        cols = [table.index.name or "", *table.columns]
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join([str(i), *map(str, row)]) + " |" for i, row in zip(table.index, table.values)]
        return "\n".join(lines)
    shown = table.copy()
    shown.columns = [f"{c} {arrows.get(c, '')}".rstrip() for c in shown.columns]
    return shown.to_string(line_width=shutil.get_terminal_size((120, 24)).columns)


def _records(df: pd.DataFrame, fmt: str) -> str:
    df = df.drop(columns=["cell"], errors="ignore")
    return df.to_csv(index=False) if fmt == "csv" else df.to_json(orient="records", indent=2)


def render(df: pd.DataFrame, fmt: str, sort: str | None = None, alpha: float = 0.05) -> str:
    """The leaderboard as `table` (wrapped to the terminal width), `markdown`, `csv` or `json` (long)."""
    check_format(fmt)
    if fmt in ("csv", "json"):
        return _records(df.drop(columns=["row"], errors="ignore"), fmt)
    arrows = {m: ("↑" if h else "↓") for m, h in df.groupby("metric")["higher_is_better"].first().items()}
    out = _text(wide(df, sort), fmt, arrows)
    legend = LEGEND.format(alpha=alpha) if "group" in df else "mean (no scores.csv: no rank groups)"
    out += "\n\n" + legend + ("" if fmt == "markdown" else "; ↑/↓ better")
    table = margins(df, sort)
    if table is not None:
        out += "\n\nmargin over the best control (+ = better; ! = not significantly better than every control):\n\n"
        out += _text(table, fmt, arrows)
    return out + "\n"


def render_by_class(df: pd.DataFrame, fmt: str) -> str:
    """Per metric: explainers × classes, cells 'mean (rank in the class)'."""
    check_format(fmt)
    if fmt in ("csv", "json"):
        return _records(df, fmt)
    blocks = []
    for metric, grp in df.groupby("metric", sort=False):
        grp = grp.assign(cell=[f"{m:.3g} ({r})" + ("†" if p else "") for m, r, p in
                               zip(grp["mean"], grp["rank"], grp["partial"])])
        table = grp.pivot_table(index="explainer", columns="class", values="cell", aggfunc="first").fillna("—")
        table = table.loc[grp.groupby("explainer")["rank"].mean().sort_values(kind="stable").index]
        table.columns = [f"class {c}" for c in table.columns]
        blocks.append(f"{metric}:\n\n" + _text(table, fmt, {}))
    return "\n\n".join(blocks) + "\n\n(mean (rank among the explainers in the class); † fewer images)\n"


def render_meta(agreement: pd.DataFrame, reliability: pd.DataFrame, fmt: str) -> str:
    """The agreement matrix (Kendall τ_b between the metrics' rankings) and the reliability table."""
    check_format(fmt)
    if fmt == "json":
        return json.dumps({"agreement": json.loads(agreement.to_json(orient="index")),
                           "reliability": json.loads(reliability.to_json(orient="records"))}, indent=2)
    if fmt == "csv":
        return reliability.to_csv(index=False) + "\n" + agreement.to_csv()
    rel = reliability.set_index("metric")
    rel = rel.assign(discrimination=[("—" if pd.isna(d) else f"{d:.0%} of {n}")
                                     for d, n in zip(rel["discrimination"], rel["control_pairs"])])
    rel = rel.drop(columns="control_pairs").round(3)
    agree = agreement.round(2)
    agree.columns = [f"[{i + 1}]" for i in range(len(agree.columns))]
    agree.index = [f"[{i + 1}] {m}" for i, m in enumerate(agree.index)]
    agree.index.name = "metric"
    return ("agreement: Kendall τ_b between the metrics' rankings of the real explainers\n\n"
            + _text(agree.astype(str).replace("nan", "—"), fmt, {})
            + "\n\nreliability over images (split-half: Spearman–Brown corrected, mean of random splits; α: "
              "Krippendorff's ordinal α, images as raters) and discrimination (real explainer × control pairs "
              "significantly in the metric's direction)\n\n"
            + _text(rel.astype(str).replace("nan", "—"), fmt, {}) + "\n")

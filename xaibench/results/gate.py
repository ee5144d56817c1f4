"""The CI gate, `xai compare RUN --check BASELINE`: a run fails when a baseline (explainer, metric)
is missing, its n fell, its protocol or the run's settings changed, or its mean got worse beyond
a per-metric, scale-aware tolerance; every reason is listed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import ConfigError, OutputError, did_you_mean
from .compare import find_runs, read_run_json, read_summary

NEUTRAL_KEYS = {"chunk_size"}  # protocol entries that change memory and speed, not values
SETTINGS = ("target", "precision", "model", "dataset.name", "dataset.split", "dataset.image_size", "dataset.params")
BASELINE_COLUMNS = {"explainer", "metric", "mean", "std", "n", "higher_is_better", "protocol"}


@dataclass
class CheckResult:
    """`table`: one row per (explainer, metric) of the baseline or the run — baseline, current,
    change (+ = better), tolerance, n_baseline, n_current, status (ok | worse | n fell | protocol |
    missing | no value | new); `reasons`: every failure, one line each."""

    table: pd.DataFrame
    reasons: list[str]
    tolerances: dict[str, str]

    @property
    def passed(self) -> bool:
        return not self.reasons


def parse_tolerances(items: Sequence[str] | Mapping[str, float] | None) -> dict[str, float]:
    """`--tolerance METRIC=VALUE` entries → {metric: absolute tolerance ≥ 0}."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        pairs = list(items.items())
    else:
        pairs = []
        for item in items:
            name, sep, value = str(item).partition("=")
            if not sep or not name.strip():
                raise ConfigError(f"--tolerance '{item}': give METRIC=VALUE (e.g. deletion=0.01), one per metric, "
                                  "because metrics live on different scales; metrics without one use "
                                  "--tolerance-se (a multiple of the baseline's standard error)")
            try:
                pairs.append((name.strip(), float(value)))
            except ValueError:
                raise ConfigError(f"--tolerance '{item}': '{value}' is not a number") from None
    for name, value in pairs:
        if not value >= 0:
            raise ConfigError(f"--tolerance {name}: must be >= 0, got {value}")
    return dict(pairs)


def _protocol(text: object) -> dict:
    if not isinstance(text, str) or not text:
        return {}
    try:
        return {k: v for k, v in json.loads(text).items() if k not in NEUTRAL_KEYS}
    except (json.JSONDecodeError, AttributeError):
        return {"protocol": text}


def protocol_changes(base: object, cur: object) -> list[str]:
    """'key: old → new' for every protocol entry that differs (chunk_size ignored)."""
    a, b = _protocol(base), _protocol(cur)
    return [f"{k}: {a.get(k, '—')} → {b.get(k, '—')}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _setting(config: dict, key: str) -> object:
    for part in key.split("."):
        config = config.get(part, {}) if isinstance(config, dict) else {}
    return config if config != {} else None


def settings_changes(base: dict, cur: dict) -> list[str]:
    """Differences between two runs' run.json configs that change what is measured: target,
    precision, model, dataset (not its limit: `n` says that) and each shared explainer's parameters."""
    bc, cc = base.get("config", {}), cur.get("config", {})
    out = [f"{k}: {_setting(bc, k)} → {_setting(cc, k)}" for k in SETTINGS if _setting(bc, k) != _setting(cc, k)]

    def params(cfg: dict) -> dict[str, object]:
        specs = cfg.get("explainers", []) or []
        return {(s if isinstance(s, str) else s.get("name")): ({} if isinstance(s, str) else s.get("params", {}))
                for s in specs}

    pb, pc = params(bc), params(cc)
    out += [f"explainer {e} params: {pb[e]} → {pc[e]}" for e in sorted(set(pb) & set(pc)) if pb[e] != pc[e]]
    return out


def tolerance_for(metric: str, row: pd.Series, absolute: Mapping[str, float], se_multiple: float) -> tuple[float, str]:
    """(tolerance, how): the metric's absolute tolerance (its own name, else its base name before
    ':'), else se_multiple × the baseline's standard error of the mean std/√n."""
    for name in (metric, metric.split(":")[0]):
        if name in absolute:
            return float(absolute[name]), f"{name}={absolute[name]:g}"
    n, std = float(row["n_base"]), float(row["std_base"])
    se = std / math.sqrt(n) if n >= 1 and math.isfinite(std) else 0.0
    return se_multiple * se, f"{se_multiple:g}·SE"


def check(runs: Sequence[str | Path], baseline: str | Path, tolerance_se: float = 3.0,
          tolerances: Sequence[str] | Mapping[str, float] | None = None, min_n_fraction: float = 0.9) -> CheckResult:
    """Check runs against a baseline summary.csv (docs/metrics.md "The CI gate")."""
    if not tolerance_se >= 0:
        raise ConfigError(f"--tolerance-se must be >= 0, got {tolerance_se}")
    if not 0 < min_n_fraction <= 1:
        raise ConfigError(f"--min-n-fraction must be in (0, 1], got {min_n_fraction}")
    absolute = parse_tolerances(tolerances)
    base_path = Path(baseline)
    base = read_summary(base_path)
    missing_cols = BASELINE_COLUMNS - set(base.columns)
    if missing_cols:
        raise OutputError(f"baseline {base_path} lacks {', '.join(sorted(missing_cols))}: use a run's summary.csv")
    unknown = sorted(set(absolute) - set(base["metric"]) - {m.split(":")[0] for m in base["metric"]})
    if unknown:
        valid = sorted({m.split(":")[0] for m in base["metric"]})
        raise ConfigError(f"--tolerance: no metric '{unknown[0]}' in the baseline.{did_you_mean(unknown[0], valid)} "
                          f"Valid: {', '.join(valid)}")
    folders = find_runs(list(runs))
    cur = pd.concat([read_summary(r) for r in folders], ignore_index=True)
    dup = cur[cur.duplicated(["explainer", "metric"], keep=False)]
    if not dup.empty:
        first = dup.iloc[0]
        raise OutputError(f"{first['explainer']} / {first['metric']} is in several runs ({', '.join(sorted(set(dup['run'])))}): "
                          "check one run at a time")
    merged = base.add_suffix("_base").rename(columns={"explainer_base": "explainer", "metric_base": "metric"}).merge(
        cur, on=["explainer", "metric"], how="outer", indicator=True)
    reasons: list[str] = []
    base_info = read_run_json(base_path)
    for folder in folders if base_info else []:
        info = read_run_json(folder)
        if info:
            reasons += [f"run setting changed ({folder.name}): {c}" for c in settings_changes(base_info, info)]
    rows, used = [], {}
    for _, r in merged.iterrows():
        pair = f"{r['explainer']} / {r['metric']}"
        row = dict(explainer=r["explainer"], metric=r["metric"], baseline=r.get("mean_base"), current=r.get("mean"),
                   change=math.nan, tolerance=math.nan, n_baseline=r.get("n_base"), n_current=r.get("n"), status="ok")
        if r["_merge"] == "right_only":
            rows.append({**row, "status": "new"})
            continue
        if r["_merge"] == "left_only":
            reasons.append(f"{pair}: missing from the run")
            rows.append({**row, "status": "missing"})
            continue
        hib = bool(r["higher_is_better_base"])
        status = []
        if r["n"] < min_n_fraction * r["n_base"]:
            reasons.append(f"{pair}: n fell from {int(r['n_base'])} to {int(r['n'])} "
                           f"(below {min_n_fraction:g} × the baseline's n)")
            status.append("n fell")
        changes = protocol_changes(r["protocol_base"], r.get("protocol"))
        if changes:
            reasons.append(f"{pair}: protocol changed ({'; '.join(changes)})")
            status.append("protocol")
        tol, how = tolerance_for(r["metric"], r, absolute, tolerance_se)
        used[r["metric"]] = how
        better = (r["mean"] - r["mean_base"]) * (1 if hib else -1)
        if pd.isna(r["mean"]) and pd.notna(r["mean_base"]):
            reasons.append(f"{pair}: no value in the run (baseline {r['mean_base']:.4g})")
            status.append("no value")
        elif pd.notna(better) and -better > tol:
            reasons.append(f"{pair}: {r['mean']:.4g} vs baseline {r['mean_base']:.4g}, worse by {-better:.3g} > "
                           f"tolerance {tol:.3g} ({how}; {'higher' if hib else 'lower'} is better)")
            status.append("worse")
        rows.append({**row, "change": better, "tolerance": tol, "status": ", ".join(status) or "ok"})
    return CheckResult(pd.DataFrame(rows), reasons, used)


def render_check(result: CheckResult, only_changed: bool = True) -> str:
    """The table of what changed (rows whose mean, n or status moved; all rows when `only_changed` is False)."""
    t = result.table
    if only_changed and not t.empty:
        moved = (t["status"] != "ok") | (t["baseline"] != t["current"]) | (t["n_baseline"] != t["n_current"])
        t = t[moved]
    if t.empty:
        return "no (explainer, metric) changed"
    shown = t.assign(n=[f"{_int(a)} → {_int(b)}" for a, b in zip(t["n_baseline"], t["n_current"])])
    shown = shown.drop(columns=["n_baseline", "n_current"])
    return shown.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def _int(v: object) -> str:
    return "—" if pd.isna(v) else str(int(v))

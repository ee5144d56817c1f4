"""Run storage: every finished batch is written atomically as its own file (so an interrupted run
loses at most the batch in flight and resumes exactly), then assembled into `results.h5`,
`scores.csv` and `summary.csv` (layout: DESIGN.md "Storage").
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from ..errors import OutputError

PARTIAL = ".partial"
SEP = "::"  # npz member names cannot hold '/' portably


def atomic_write(path: Path, write: Any, mode: str = "w") -> None:
    """Write a file through a temporary sibling and `os.replace`, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            if callable(write):
                write(f)
            else:
                f.write(write)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class BatchFiles:
    """The per-batch result files of one run folder."""

    run_dir: Path

    @property
    def folder(self) -> Path:
        return self.run_dir / PARTIAL

    def path(self, k: int) -> Path:
        return self.folder / f"batch_{k:06d}.npz"

    def done(self) -> set[int]:
        if not self.folder.is_dir():
            return set()
        return {int(p.stem.split("_")[1]) for p in self.folder.glob("batch_*.npz")}

    def write(self, k: int, arrays: dict[str, np.ndarray]) -> None:
        packed = {key.replace("/", SEP): np.asarray(v) for key, v in arrays.items()}
        atomic_write(self.path(k), lambda f: np.savez(f, **packed), mode="wb")

    def read(self, k: int) -> dict[str, np.ndarray]:
        with np.load(self.path(k), allow_pickle=False) as z:
            return {key.replace(SEP, "/"): z[key] for key in z.files}

    def keys(self, ks: Iterable[int]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Union of array names over batches with their per-row shape and dtype."""
        out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        for k in ks:
            with np.load(self.path(k), allow_pickle=False) as z:
                for key in z.files:
                    name = key.replace(SEP, "/")
                    if name not in out:
                        arr = z[key]
                        out[name] = (arr.shape[1:], arr.dtype)
        return out


def bootstrap_ci(values: np.ndarray, seed: int = 0, resamples: int = 1000, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean (Efron 1979), seeded, vectorized."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size == 1:
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    step = max(1, int(2e7 // v.size))
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        means[start:stop] = v[rng.integers(0, v.size, size=(stop - start, v.size))].mean(1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def assemble(run_dir: Path, n_batches: int, metric_info: dict[str, dict[str, Any]], attrs: dict[str, str], seed: int) -> None:
    """Build results.h5, scores.csv and summary.csv from the batch files of a finished run.

    metric_info: metric name → {"higher_is_better": bool, "protocol": dict}.
    """
    files = BatchFiles(run_dir)
    ks = list(range(n_batches))
    missing = [k for k in ks if k not in files.done()]
    if missing:
        raise OutputError(f"{run_dir}: batches {missing[:5]} are missing; run again with --resume")
    layout = {k: v for k, v in files.keys(ks).items() if not k.startswith(("cost/", "preview/"))}
    sizes = [files.read(k)["index"].shape[0] for k in ks] if ks else []
    n = int(sum(sizes))
    h5_path = run_dir / "results.h5"
    tmp = run_dir / ".results.h5.tmp"
    frames: list[pd.DataFrame] = []
    skipped: dict[tuple[str, str], int] = {}
    try:
        with h5py.File(tmp, "w", track_order=True) as h5:
            for key, value in attrs.items():
                h5.attrs[key] = value
            h5.attrs["completed_batches"] = np.arange(n_batches)
            dsets: dict[str, h5py.Dataset] = {}
            for name, (shape, dtype) in layout.items():
                dsets[name] = _create(h5, name, n, shape, dtype)
            row = 0
            for k in ks:
                arrays = files.read(k)
                b = arrays["index"].shape[0]
                for name, arr in arrays.items():
                    if name.startswith("preview/") and name not in h5:
                        h5.create_dataset(name, data=arr, compression="gzip")
                present = {name: arrays.get(name) for name in layout}
                for name, arr in present.items():
                    if arr is None:
                        continue
                    if name.startswith("maps/"):
                        mag = np.abs(arr.reshape(b, -1))
                        scale = np.where(np.isfinite(mag), mag, 0).max(axis=1) if arr.size else np.zeros(b)
                        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)  # f16 keeps relative precision
                        dsets[name][row : row + b] = (arr / scale[:, None, None]).astype(np.float16)
                        h5[name.replace("maps/", "map_scale/", 1)][row : row + b] = scale
                    else:
                        dsets[name][row : row + b] = arr.astype(dsets[name].dtype) if arr.dtype.kind != "U" else arr.astype(object)
                frames.append(_tidy(arrays))
                for name, arr in arrays.items():
                    if name.startswith("status/"):
                        _, explainer, metric = name.split("/", 2)
                        skipped[(explainer, metric)] = skipped.get((explainer, metric), 0) + int((arr == -1).sum())
                row += b
        os.replace(tmp, h5_path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {h5_path}: {e}") from e
    scores = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SCORE_COLUMNS)
    scores = add_overall(scores)
    atomic_write(run_dir / "scores.csv", scores.to_csv(index=False))
    atomic_write(run_dir / "summary.csv", summarize(scores, metric_info, seed, skipped).to_csv(index=False))


def _create(h5: h5py.File, name: str, n: int, shape: tuple[int, ...], dtype: np.dtype) -> h5py.Dataset:
    if name.startswith("maps/"):
        h5.create_dataset(name.replace("maps/", "map_scale/", 1), shape=(n,), dtype="f4")
        return h5.create_dataset(
            name, shape=(n, *shape), dtype="f2", chunks=(1, *shape) if n else None, compression="gzip", compression_opts=4,
            fillvalue=np.nan,
        )
    if dtype.kind == "U":
        return h5.create_dataset(name, shape=(n, *shape), dtype=h5py.string_dtype())
    if dtype.kind == "f":
        return h5.create_dataset(name, shape=(n, *shape), dtype="f4", fillvalue=np.nan)
    if dtype.kind == "b":
        return h5.create_dataset(name, shape=(n, *shape), dtype="bool")
    return h5.create_dataset(name, shape=(n, *shape), dtype=dtype, fillvalue=-1 if dtype.kind == "i" else 0)


SCORE_COLUMNS = ["index", "id", "label", "target", "pred", "explainer", "metric", "value"]


def _tidy(arrays: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per-image rows (index, id, label, target, pred, explainer, metric, value) of one batch."""
    parts = []
    base = {k: arrays[f"samples/{k}"] for k in ("id", "label", "target", "pred")}
    base["index"] = arrays["index"]
    for name, values in arrays.items():
        if not name.startswith("scores/"):
            continue
        _, explainer, metric = name.split("/", 2)
        status = arrays.get(f"status/{explainer}/{metric.split(':')[0]}")
        keep = status == 1 if status is not None else np.isfinite(values)
        if not keep.any():
            continue
        df = pd.DataFrame({k: v[keep] for k, v in base.items()})
        df["explainer"], df["metric"], df["value"] = explainer, metric, values[keep].astype(np.float64)
        parts.append(df)
    if not parts:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    return pd.concat(parts, ignore_index=True)[SCORE_COLUMNS]


def add_overall(scores: pd.DataFrame) -> pd.DataFrame:
    """Add insertion − deletion per image as metric `overall` (higher is better), RISE §4."""
    if scores.empty or not {"deletion", "insertion"} <= set(scores["metric"]):
        return scores
    key = ["index", "id", "label", "target", "pred", "explainer"]
    wide = scores[scores.metric.isin(["deletion", "insertion"])].pivot_table(index=key, columns="metric", values="value")
    wide = wide.dropna()
    overall = (wide["insertion"] - wide["deletion"]).rename("value").reset_index()
    overall["metric"] = "overall"
    return pd.concat([scores, overall[SCORE_COLUMNS]], ignore_index=True)


def summarize(
    scores: pd.DataFrame, metric_info: dict[str, dict[str, Any]], seed: int, skipped: dict[tuple[str, str], int] | None = None
) -> pd.DataFrame:
    """Per (explainer, metric): mean, std, n, n_skipped, 95 % bootstrap CI, direction, protocol."""
    rows = []
    if scores.empty:
        return pd.DataFrame(columns=["explainer", "metric", "mean", "std", "n", "n_skipped", "ci_low", "ci_high",
                                     "higher_is_better", "protocol"])
    for (explainer, metric), grp in scores.groupby(["explainer", "metric"], sort=False):
        base = metric.split(":")[0]
        info = metric_info.get(metric) or metric_info.get(base, {"higher_is_better": True, "protocol": {}})
        v = grp["value"].to_numpy(dtype=np.float64)
        lo, hi = bootstrap_ci(v, seed=seed)
        rows.append(
            dict(
                explainer=explainer,
                metric=metric,
                mean=float(np.nanmean(v)) if np.isfinite(v).any() else float("nan"),
                std=float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 else 0.0,
                n=int(np.isfinite(v).sum()),
                n_skipped=int((skipped or {}).get((explainer, base), 0)),
                ci_low=lo,
                ci_high=hi,
                higher_is_better=bool(info["higher_is_better"]),
                protocol=json.dumps(info.get("protocol", {}), sort_keys=True, default=str),
            )
        )
    for explainer, grp in scores[scores.metric == "pointing_game"].groupby("explainer", sort=False):
        per_class = grp.groupby("target")["value"].mean()  # TorchRay's convention: mean of class accuracies
        rows.append(dict(explainer=explainer, metric="pointing_game:class_mean", mean=float(per_class.mean()),
                         std=float(per_class.std(ddof=1)) if len(per_class) > 1 else 0.0, n=int(len(grp)),
                         n_skipped=int((skipped or {}).get((explainer, "pointing_game"), 0)),
                         ci_low=float("nan"), ci_high=float("nan"), higher_is_better=True,
                         protocol=json.dumps({"aggregation": "mean of per-class hit rates"}, sort_keys=True)))
    return pd.DataFrame(rows)


def write_probe(run_dir: Path, name: str, tables: dict[str, Any], csv_folder: Path | None = None,
                marker: str | None = None) -> None:
    """Keep a probe's output: DataFrames as CSV under probes/<name>/, everything in a batch-style
    file that `add_extras_to_h5` copies into results.h5 under /probes/<name>/."""
    folder = csv_folder or run_dir / "probes" / name
    arrays: dict[str, np.ndarray] = {}
    for table, value in tables.items():
        if isinstance(value, pd.DataFrame):
            atomic_write(folder / f"{table}.csv", value.to_csv(index=False))
            arrays[f"table/{table}"] = np.frombuffer(value.to_json(orient="split").encode(), dtype=np.uint8)
        else:
            arrays[f"array/{table}"] = np.asarray(value)
    BatchFiles(run_dir).folder.mkdir(parents=True, exist_ok=True)
    packed = {key.replace("/", SEP): v for key, v in arrays.items()}
    atomic_write(run_dir / PARTIAL / f"probe_{marker or name}.npz", lambda f: np.savez(f, **packed), mode="wb")


def add_extras_to_h5(run_dir: Path) -> None:
    """Copy probe and featviz outputs into results.h5 (/probes/<name>/<table>, compound for tables)."""
    probe_files = sorted((run_dir / PARTIAL).glob("probe_*.npz"))
    if not probe_files:
        return
    with h5py.File(run_dir / "results.h5", "a") as h5:
        for path in probe_files:
            name = path.stem[len("probe_"):]
            group = h5.require_group("featviz" if name == "featviz" else f"probes/{name}")
            with np.load(path, allow_pickle=False) as z:
                for key in z.files:
                    kind, table = key.split(SEP, 1)
                    if table in group:
                        del group[table]
                    if kind == "table":
                        df = pd.read_json(io.StringIO(bytes(z[key]).decode()), orient="split")
                        group.create_dataset(table, data=to_records(df))
                    else:
                        group.create_dataset(table, data=z[key], compression="gzip")


def to_records(df: pd.DataFrame) -> np.ndarray:
    """A DataFrame as a numpy structured array HDF5 can store (strings as UTF-8 variable length)."""
    cols = []
    for c in df.columns:
        v = df[c].to_numpy()
        if v.dtype.kind in "OUS":
            cols.append((str(c), h5py.string_dtype(), v.astype(str).astype(object)))
        elif v.dtype.kind == "b":
            cols.append((str(c), np.bool_, v))
        else:
            cols.append((str(c), v.dtype, v))
    out = np.empty(len(df), dtype=[(n, t) for n, t, _ in cols])
    for n, _, v in cols:
        out[n] = v
    return out

"""Run storage: every finished batch is written atomically as its own file (so an interrupted run
loses at most the batch in flight and resumes exactly), then assembled into `results.h5`,
`scores.csv` and `summary.csv` (layout: docs/architecture.md "Run folder").
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from ..errors import OutputError
from . import keys, summary

PARTIAL = ".partial"
SEP = "::"  # npz member names cannot hold '/' portably


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS shows it (Linux: /proc/self/status),
    else set and restored under a lock (`os.umask` has no read-only form: another thread creating a
    file in that instant would get mode 0666)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0)
        os.umask(mask)
    return mask


def atomic_write(path: Path, write: Any, mode: str = "w") -> None:
    """Write a file through a temporary sibling and `os.replace`, so readers never see half a file;
    it gets the permissions a plain `open` would (0666 less the umask; mkstemp's are 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~current_umask())
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

    def remove(self) -> None:
        """Delete the batch files and the probes' partial results (`.partial/`), once assembled."""
        shutil.rmtree(self.folder, ignore_errors=True)

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


def assemble(run_dir: Path, n_batches: int, metric_info: dict[str, dict[str, Any]], attrs: dict[str, str], seed: int,
             derived: Sequence[Any] = ()) -> None:
    """Build results.h5, scores.csv and summary.csv from the batch files of a finished run.

    metric_info: metric name → {"higher_is_better": bool, "protocol": dict, "class_mean": str | None};
    derived: the derived scores the metrics declare (`summary.add_derived`).
    """
    files = BatchFiles(run_dir)
    ks = list(range(n_batches))
    missing = [k for k in ks if k not in files.done()]
    if missing:
        raise OutputError(f"{run_dir}: batches {missing[:5]} are missing; run again with --resume")
    layout = {k: v for k, v in files.keys(ks).items() if not k.startswith(keys.NOT_PER_IMAGE)}
    sizes = [files.read(k)[keys.INDEX].shape[0] for k in ks] if ks else []
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
                b = arrays[keys.INDEX].shape[0]
                for name, arr in arrays.items():
                    if name.startswith("preview/") and name not in h5:
                        h5.create_dataset(name, data=arr, compression="gzip")
                present = {name: arrays.get(name) for name in layout}
                for name, arr in present.items():
                    if arr is None:
                        continue
                    key = keys.parse(name)
                    if key.kind == "maps":
                        mag = np.abs(arr.reshape(b, -1))
                        scale = np.where(np.isfinite(mag), mag, 0).max(axis=1) if arr.size else np.zeros(b)
                        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)  # f16 keeps relative precision
                        dsets[name][row : row + b] = (arr / scale[:, None, None]).astype(np.float16)
                        h5[keys.map_scale(key.explainer)][row : row + b] = scale
                    else:
                        dsets[name][row : row + b] = arr.astype(dsets[name].dtype) if arr.dtype.kind != "U" else arr.astype(object)
                frames.append(summary.tidy(arrays))
                for name, arr in arrays.items():
                    key = keys.parse(name)
                    if key.kind == "status":
                        pair = (key.explainer, key.metric)
                        skipped[pair] = skipped.get(pair, 0) + int(np.isin(arr, keys.SKIPPED).sum())
                row += b
        os.replace(tmp, h5_path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {h5_path}: {e}") from e
    scores = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=summary.SCORE_COLUMNS)
    scores = summary.add_derived(scores, derived)
    atomic_write(run_dir / "scores.csv", scores.to_csv(index=False))
    curves = dataset_curves(h5_path, metric_info)
    atomic_write(run_dir / "summary.csv", summary.summarize(scores, metric_info, seed, skipped, curves).to_csv(index=False))


def dataset_curves(h5_path: Path, metric_info: dict[str, dict[str, Any]]) -> dict[tuple[str, str], np.ndarray]:
    """The stored curves of the metrics that declare a dataset-level aggregate, by (explainer, metric)."""
    wanted = {m for m, info in metric_info.items() if info.get("dataset")}
    out: dict[tuple[str, str], np.ndarray] = {}
    if not wanted:
        return out
    with h5py.File(h5_path, "r") as h5:
        for explainer, group in (h5["curves"].items() if "curves" in h5 else []):
            for metric in wanted & set(group):
                out[(explainer, metric)] = group[metric][()].astype(np.float64)
    return out


def _create(h5: h5py.File, name: str, n: int, shape: tuple[int, ...], dtype: np.dtype) -> h5py.Dataset:
    key = keys.parse(name)
    if key.kind == "maps":
        h5.create_dataset(keys.map_scale(key.explainer), shape=(n,), dtype="f4")
        return h5.create_dataset(
            name, shape=(n, *shape), dtype="f2", chunks=(1, *shape) if n else None, compression="gzip", compression_opts=4,
            fillvalue=np.nan,
        )
    if key.kind == "thumbs":
        return h5.create_dataset(name, shape=(n, *shape), dtype=dtype, chunks=(min(max(n, 1), 64), *shape) if n else None,
                                 compression="gzip", compression_opts=4)
    if dtype.kind == "U":
        return h5.create_dataset(name, shape=(n, *shape), dtype=h5py.string_dtype())
    if dtype.kind == "f":
        return h5.create_dataset(name, shape=(n, *shape), dtype="f4", fillvalue=np.nan)
    if dtype.kind == "b":
        return h5.create_dataset(name, shape=(n, *shape), dtype="bool")
    fill = -1 if dtype.kind == "i" and key.kind != "status" else 0  # a batch the explainer skipped: "not asked"
    return h5.create_dataset(name, shape=(n, *shape), dtype=dtype, fillvalue=fill)


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


ERROR_COLUMNS = ["index", "id", "stage", "plugin", "reason"]


def write_errors(run_dir: Path) -> None:
    """errors.csv, one row per (image, failure): stage `image` (unreadable, non-finite logits: not
    explained at all), `explainer` or `metric` (the plug-in raised on the image's batch with
    `on_error: skip`; plugin `<explainer>` or `<explainer>/<metric>`), and the reason."""
    rows: list[tuple[int, str, str, str, str]] = []
    with h5py.File(run_dir / "results.h5", "r") as h5:
        ids = h5[keys.sample("id")].asstr()[:] if keys.sample("id") in h5 else np.array([], dtype=object)
        found = {keys.sample("error"): ("image", "")} if keys.sample("error") in h5 else {}
        if "failures" in h5:
            h5["failures"].visititems(lambda name, obj: found.__setitem__(
                f"failures/{name}", ("metric" if "/" in name else "explainer", name)) if isinstance(obj, h5py.Dataset)
                else None)
        for path, (stage, plugin) in found.items():
            reasons = h5[path].asstr()[:]
            rows += [(int(i), str(ids[i]), stage, plugin, reasons[i]) for i in np.flatnonzero(reasons != "")]
    df = pd.DataFrame(sorted(rows, key=lambda r: r[:4]), columns=ERROR_COLUMNS)
    atomic_write(run_dir / "errors.csv", df.to_csv(index=False))


PREVIEW = 8  # images of the first batch kept (uint8) for figures that need no dataset


def preview_arrays(images, boxes: list, masks) -> dict[str, np.ndarray]:
    """The first PREVIEW images of a run (pixels (B,3,H,W) in [0,1] → uint8) with their boxes
    (list of (K,4) or None) and masks ((B,H,W) or None), so figures need no dataset."""
    p = min(PREVIEW, len(images))
    out = {"preview/images": (images[:p].clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy(),
           "preview/rows": np.arange(p)}
    kmax = max((len(b) for b in boxes[:p] if b is not None), default=0)
    if kmax:
        arr = np.full((p, kmax, 4), np.nan, dtype=np.float32)
        for i, b in enumerate(boxes[:p]):
            if b is not None and len(b):
                arr[i, : len(b)] = b.cpu().numpy()
        out["preview/boxes"] = arr
    if masks is not None:
        out["preview/masks"] = masks[:p].cpu().numpy()
    return out


THUMB = 96  # longest side of the per-image thumbnails kept for reports (worst images, the map grid)


def thumbnail_arrays(images, boxes: list, masks) -> dict[str, np.ndarray]:
    """Every image of a batch downscaled to at most THUMB pixels a side (uint8, (B,h,w,3)) with its
    ground truth at that size ((B,h,w) bool: the mask, else the boxes filled; all False without)."""
    import torch.nn.functional as F

    b, _, h, w = images.shape
    f = min(1.0, THUMB / max(h, w))
    size = (max(1, round(h * f)), max(1, round(w * f)))
    small = F.interpolate(images.float().clamp(0, 1), size=size, mode="area") if f < 1 else images.float().clamp(0, 1)
    truth = np.zeros((b, *size), dtype=bool)
    if masks is not None:
        m = masks.float()[:, None]
        truth = (F.interpolate(m, size=size, mode="area")[:, 0] >= 0.5).cpu().numpy() if f < 1 else masks.cpu().numpy()
    else:
        for i, bx in enumerate(boxes):
            for x0, y0, x1, y1 in (bx.cpu().numpy() * f if bx is not None else ()):
                truth[i, max(0, int(y0)) : max(0, int(np.ceil(y1))), max(0, int(x0)) : max(0, int(np.ceil(x1)))] = True
    return {keys.thumb("images"): (small * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy(), keys.thumb("truth"): truth}

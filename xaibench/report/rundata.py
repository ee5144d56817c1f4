"""What a report shows of one run, read from its folder alone (results.h5, summary.csv, errors.csv,
run.json, probe and featviz outputs): no model, no dataset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from ..errors import OutputError
from ..results import keys

CONTROLS = ("random", "center", "edges")  # control explainers (no model knowledge): marked in leaderboards


def is_control(explainer: str) -> bool:
    """True for the control explainers, the floor a real explainer must beat."""
    return explainer in CONTROLS


@dataclass
class RunData:
    """One finished run as the report reads it; arrays are loaded lazily from `h5_path`."""

    folder: Path
    meta: dict[str, Any]  # run.json ({} when absent)
    summary: pd.DataFrame
    errors: pd.DataFrame
    config_yaml: str
    versions: dict[str, str]
    n_images: int
    explainers: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)  # headline metrics with per-image scores in results.h5

    @property
    def h5_path(self) -> Path:
        return self.folder / "results.h5"

    @property
    def name(self) -> str:
        return self.meta.get("name") or self.folder.name

    def direction(self, metric: str) -> bool:
        """True when higher is better for `metric` (summary.csv; True when unknown)."""
        rows = self.summary[self.summary["metric"] == metric]
        return bool(rows["higher_is_better"].iloc[0]) if len(rows) else True

    def costs(self, explainer: str) -> dict[str, float] | None:
        """s/image and forward/backward passes per image of an explainer (run.json), or None."""
        return self.meta.get("costs", {}).get(f"explainer/{explainer}")


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame()
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise OutputError(f"cannot read {path}: {e}") from e


def load_run(folder: str | Path) -> RunData:
    """The report's view of run folder `folder`; OutputError when it is not a finished run."""
    folder = Path(folder)
    h5_path = folder / "results.h5"
    if not h5_path.is_file():
        raise OutputError(f"{folder} holds no results.h5 (not a finished run)")
    meta: dict[str, Any] = {}
    if (folder / "run.json").is_file():
        try:
            meta = json.loads((folder / "run.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise OutputError(f"cannot read {folder / 'run.json'}: {e}") from e
    summary = _read_csv(folder / "summary.csv")
    if summary.empty:
        summary = pd.DataFrame(columns=["explainer", "metric", "mean", "higher_is_better"])
    with h5py.File(h5_path, "r") as h5:
        config_yaml = str(h5.attrs.get("config", ""))
        versions = json.loads(h5.attrs.get("versions", "{}"))
        n = int(h5[keys.INDEX].shape[0]) if keys.INDEX in h5 else 0
        explainers = list(h5["scores"]) if "scores" in h5 else []
        explainers += [e for e in (h5["maps"] if "maps" in h5 else []) if e not in explainers]
        metrics: list[str] = []
        for e in h5["scores"] if "scores" in h5 else []:
            metrics += [m for m in h5["scores"][e] if ":" not in m and m not in metrics]
    return RunData(folder, meta, summary, _read_csv(folder / "errors.csv"), config_yaml, versions, n, explainers,
                   metrics)


@dataclass
class Arrays:
    """The per-image arrays a report draws: samples, thumbnails, maps (float32, NaN where not
    computed), scores and curves, read from results.h5 once."""

    label: np.ndarray
    target: np.ndarray
    ids: np.ndarray
    thumbs: np.ndarray | None  # (N,h,w,3) uint8
    truth: np.ndarray | None  # (N,h,w) bool
    preview_rows: np.ndarray  # rows with an image when there are no thumbnails (the preview)
    scores: dict[str, dict[str, np.ndarray]]
    curves: dict[str, dict[str, np.ndarray]]
    h5_path: Path

    def image(self, row: int) -> np.ndarray | None:
        return self.thumbs[row] if self.thumbs is not None else None

    def maps(self, explainer: str, rows: np.ndarray) -> np.ndarray | None:
        """Maps of `rows` (sorted) as float32 in their stored units, or None without saved maps."""
        with h5py.File(self.h5_path, "r") as h5:
            name = keys.map_key(explainer)
            if name not in h5 or not len(rows):
                return None
            m = h5[name][np.asarray(rows)].astype(np.float32)
            scale = h5[keys.map_scale(explainer)][np.asarray(rows)]
            return m * scale[:, None, None]


def load_arrays(run: RunData) -> Arrays:
    """Read samples, thumbnails (or the preview images), scores and curves of `run`."""
    with h5py.File(run.h5_path, "r") as h5:
        label = h5[keys.sample("label")][:]
        target = h5[keys.sample("target")][:]
        ids = h5[keys.sample("id")].asstr()[:]
        thumbs = truth = None
        preview_rows = np.zeros(0, dtype=np.int64)
        if keys.thumb("images") in h5:
            thumbs = h5[keys.thumb("images")][:]
            truth = h5[keys.thumb("truth")][:] if keys.thumb("truth") in h5 else None
        elif "preview/images" in h5:  # runs made before thumbnails: the first images only
            preview_rows = h5["preview/rows"][:]
            images = h5["preview/images"][:]
            thumbs = np.zeros((len(label), *images.shape[1:]), dtype=np.uint8)
            thumbs[preview_rows] = images
            if "preview/masks" in h5:
                truth = np.zeros((len(label), *images.shape[1:3]), dtype=bool)
                truth[preview_rows] = h5["preview/masks"][:]
        scores = {e: {m: h5["scores"][e][m][:] for m in h5["scores"][e] if ":" not in m}
                  for e in (h5["scores"] if "scores" in h5 else [])}
        curves = {e: {m: h5["curves"][e][m][:] for m in h5["curves"][e]} for e in (h5["curves"] if "curves" in h5 else [])}
    if thumbs is not None and not len(preview_rows):
        preview_rows = np.arange(len(label))
    return Arrays(label, target, ids, thumbs, truth, preview_rows, scores, curves, run.h5_path)


def worst_rows(values: np.ndarray, higher_is_better: bool, k: int = 8) -> np.ndarray:
    """The k images that score worst in the metric's direction (lowest if higher is better, else
    highest), NaN (not scored) left out; ties broken by row."""
    rows = np.flatnonzero(np.isfinite(values))
    v = values[rows] if higher_is_better else -values[rows]
    return rows[np.lexsort((rows, v))][:k]

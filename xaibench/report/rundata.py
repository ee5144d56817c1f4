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

    def is_control(self, explainer: str) -> bool:
        """A control explainer: listed under run.json `controls`, or named random/center/edges."""
        return explainer in self.meta.get("controls", ()) or is_control(explainer)

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
    """The per-image arrays a report draws: samples, scores and curves read from results.h5 once;
    images (thumbnails, or the preview of older runs) and maps read for the rows shown only."""

    label: np.ndarray
    target: np.ndarray
    ids: np.ndarray
    image_rows: np.ndarray  # rows that have an image (all with thumbnails, else the preview's)
    scores: dict[str, dict[str, np.ndarray]]
    curves: dict[str, dict[str, np.ndarray]]
    h5_path: Path

    def images(self, rows: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray | None]]:
        """Row → (image (h,w,3) uint8, ground truth (h,w) bool or None) for `rows` among image_rows."""
        rows = np.array(sorted(set(np.asarray(rows).tolist()) & set(self.image_rows.tolist())), dtype=np.int64)
        if not len(rows):
            return {}
        with h5py.File(self.h5_path, "r") as h5:
            if keys.thumb("images") in h5:
                imgs = h5[keys.thumb("images")][rows]
                truth = h5[keys.thumb("truth")][rows] if keys.thumb("truth") in h5 else [None] * len(rows)
            else:  # runs made before thumbnails: the preview of the first batch
                at = {int(r): i for i, r in enumerate(h5["preview/rows"][:])}
                pick = [at[int(r)] for r in rows]
                imgs = h5["preview/images"][:][pick]
                truth = h5["preview/masks"][:][pick] if "preview/masks" in h5 else [None] * len(rows)
        return {int(r): (imgs[i], truth[i]) for i, r in enumerate(rows)}

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
    """Read samples, scores and curves of `run`, and which rows have an image."""
    with h5py.File(run.h5_path, "r") as h5:
        label = h5[keys.sample("label")][:]
        target = h5[keys.sample("target")][:]
        ids = h5[keys.sample("id")].asstr()[:]
        if keys.thumb("images") in h5:
            image_rows = np.arange(len(label))
        else:
            image_rows = h5["preview/rows"][:] if "preview/rows" in h5 else np.zeros(0, dtype=np.int64)
        scores = {e: {m: h5["scores"][e][m][:] for m in h5["scores"][e] if ":" not in m}
                  for e in (h5["scores"] if "scores" in h5 else [])}
        curves = {e: {m: h5["curves"][e][m][:] for m in h5["curves"][e]} for e in (h5["curves"] if "curves" in h5 else [])}
    return Arrays(label, target, ids, image_rows, scores, curves, run.h5_path)


def worst_rows(values: np.ndarray, higher_is_better: bool, k: int = 8) -> np.ndarray:
    """The k images that score worst in the metric's direction (lowest if higher is better, else
    highest), NaN (not scored) left out; ties broken by row."""
    rows = np.flatnonzero(np.isfinite(values))
    v = values[rows] if higher_is_better else -values[rows]
    return rows[np.lexsort((rows, v))][:k]

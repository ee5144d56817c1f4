"""Where a run's numbers come from: package versions, git commit, device, seed, timings and the
model passes each plug-in cost — `run.json` and the attributes of `results.h5`.
"""

from __future__ import annotations

import json
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..version import __version__
from . import keys
from .store import BatchFiles, atomic_write

PASS_KINDS = ("forward_images", "backward_images")


@dataclass
class Cost:
    """Time and model passes (images through a forward, through a backward) spent by one plug-in."""

    seconds: float = 0.0
    images: int = 0
    passes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PASS_KINDS, 0))

    def add(self, seconds: float, images: int, passes: dict[str, int]) -> None:
        self.seconds += seconds
        self.images += images
        for kind in PASS_KINDS:
            self.passes[kind] += passes[kind]

    def totals(self) -> np.ndarray:
        """(seconds, images, forward images, backward images): a batch file's cost row."""
        return np.array([self.seconds, self.images, *(self.passes[k] for k in PASS_KINDS)], dtype=np.float64)

    def as_dict(self) -> dict[str, float]:
        per = max(self.images, 1)
        return dict(
            seconds=round(self.seconds, 4),
            images=self.images,
            seconds_per_image=self.seconds / per,
            forward_passes_per_image=self.passes["forward_images"] / per,
            backward_passes_per_image=self.passes["backward_images"] / per,
        )


def batch_costs(files: BatchFiles, extra: dict[str, Cost] | None = None) -> dict[str, Cost]:
    """Per-plug-in cost summed over every batch file (so a resumed run counts all its batches),
    plus `extra` costs kept outside the batch files (probes)."""
    totals: dict[str, Cost] = {}
    for k in sorted(files.done()):
        for name, d in files.read(k).items():
            key = keys.parse(name)
            if key.kind == "cost":
                totals.setdefault(key.explainer, Cost()).add(float(d[0]), int(d[1]), dict(zip(PASS_KINDS, map(int, d[2:]))))
    totals.update(extra or {})
    return totals


def versions() -> dict[str, str]:
    import h5py
    import torch
    import torchvision

    out = {"python": platform.python_version(), "xaibench": __version__, "torch": torch.__version__,
           "torchvision": torchvision.__version__, "numpy": np.__version__, "h5py": h5py.__version__}
    from importlib.metadata import PackageNotFoundError, version

    try:  # zennit has no __version__: its installed distribution's
        out["zennit"] = version("zennit")
    except PackageNotFoundError:
        pass
    return out


def git_commit() -> str | None:
    """The commit of the xaibench checkout, when it is one."""
    try:
        here = Path(__file__).resolve().parent
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return res.stdout.strip() or None if res.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def h5_attrs(config_yaml: str) -> dict[str, str]:
    """The attributes of results.h5: the resolved config (YAML) and the package versions."""
    return {"config": config_yaml, "versions": json.dumps(versions()), "xaibench": __version__}


def write_run_json(run_dir: Path, status: str, fields: dict[str, Any], costs: dict[str, Cost], wall: float,
                   world: int = 1) -> None:
    """run.json: status, the run's own `fields` (name, config, model, sizes, protocols …),
    versions, commit, timings and the pass counters of every plug-in."""
    meta = {
        "status": status,
        **fields,
        "versions": versions(),
        "git_commit": git_commit(),
        "wall_seconds": round(wall, 3),
        "processes": world,
        "costs": {name: c.as_dict() for name, c in sorted(costs.items())},
    }
    atomic_write(run_dir / "run.json", json.dumps(meta, indent=2, default=str))

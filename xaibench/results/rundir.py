"""Run folders: a new one is created atomically and never overwrites another; an interrupted run
is continued only with the same config.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import OutputError


def new_folder(parent: str | Path, name: str) -> Path:
    """`parent/<name>-<timestamp>`, created atomically: two runs started in the same second get
    `…-2`, `…-3` rather than one folder."""
    base = Path(parent)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output folder {base}: {e.strerror or e}") from e
    for n in range(1, 1000):
        folder = base / (f"{name}-{stamp}" if n == 1 else f"{name}-{stamp}-{n}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
        except OSError as e:
            raise OutputError(f"cannot create run folder {folder}: {e.strerror or e}") from e
    raise OutputError(f"cannot create a new run folder under {base}: too many runs named {name}-{stamp}")


def given_folder(out: str | Path) -> Path:
    """The folder the user named: created when missing; refused when it holds anything."""
    folder = Path(out)
    if folder.exists() and any(folder.iterdir()):
        raise OutputError(f"{folder} already exists and is not empty; a run never overwrites another. "
                          "Choose another --out, or continue it with --resume")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create run folder {folder}: {e.strerror or e}") from e
    return folder


def prepare(parent: str | Path, name: str, config: dict[str, Any], out: str | Path | None, resume: bool) -> Path:
    """The run folder of a run: `out` or a new one under `parent`; with `resume`, the existing
    `out` whose run.json holds the same config."""
    if not resume:
        return given_folder(out) if out is not None else new_folder(parent, name)
    if out is None:
        raise OutputError("--resume needs --out RUN_DIR naming the interrupted run")
    folder = Path(out)
    meta = folder / "run.json"
    if not meta.is_file():
        raise OutputError(f"cannot resume {folder}: it holds no run.json (not a run folder)")
    if json.loads(meta.read_text())["config"] != json.loads(json.dumps(config)):
        raise OutputError(f"cannot resume {folder}: its config differs from the one given; use the same config")
    for stale in [*folder.glob(".*.tmp"), *(folder / ".partial").glob(".*.tmp")]:
        stale.unlink(missing_ok=True)  # half-written files of the interrupted process, never renamed into place
    return folder


def recorded(folder: str | Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """The entries `keys` of a run folder's run.json that it holds (a resumed run reuses them)."""
    meta = Path(folder) / "run.json"
    if not meta.is_file():
        return {}
    fields = json.loads(meta.read_text())
    return {k: fields[k] for k in keys if k in fields}

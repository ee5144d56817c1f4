"""The statistics tables of a run folder (`stats/`): the rank-group leaderboard, every pairwise
test, the per-class table, the metrics' agreement matrix and their reliability — as CSV files.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import OutputError
from . import compare, meta, stats
from .store import atomic_write

FOLDER = "stats"
FILES = ("leaderboard.csv", "pairs.csv", "by_class.csv", "agreement.csv", "reliability.csv")


def compute(run_dir: str | Path, n_splits: int = 100) -> dict[str, pd.DataFrame]:
    """The five tables of one run, keyed by file name (docs/metrics.md "Leaderboard statistics",
    "Metric meta-evaluation"); empty tables when the run scored nothing."""
    run_dir = Path(run_dir)
    if not (run_dir / "scores.csv").is_file():
        raise OutputError(f"{run_dir} holds no scores.csv (not a finished run)")
    runs = compare.load([run_dir])
    scores = runs.scores if runs.scores is not None else pd.DataFrame(columns=["explainer", "metric", "image", "target", "value"])
    pairs = stats.all_pairs(scores, runs.directions)  # every pairwise test, once: the board's groups read them
    board = stats.paired_board(scores, runs.directions, runs.controls, seed=runs.seed, pairs=pairs)
    headline = [m for m in pd.unique(scores["metric"]) if ":" not in m]
    head_scores = scores[scores["metric"].isin(headline)]
    reliability = meta.reliability(head_scores, runs.directions, runs.controls, board, n_splits=n_splits, seed=runs.seed)
    return {
        "leaderboard.csv": board,
        "pairs.csv": pairs,
        "by_class.csv": stats.by_class(scores, runs.directions),
        "agreement.csv": meta.agreement(board, headline).reset_index(),
        "reliability.csv": reliability,
    }


def write_tables(run_dir: str | Path) -> list[Path]:
    """Write the tables of `compute` to <run>/stats/; return the paths."""
    out = Path(run_dir) / FOLDER
    written = []
    for name, table in compute(run_dir).items():
        atomic_write(out / name, table.to_csv(index=False))
        written.append(out / name)
    return written


def read_tables(run_dir: str | Path) -> dict[str, pd.DataFrame]:
    """The tables in <run>/stats/, computed and written first when absent."""
    folder = Path(run_dir) / FOLDER
    if not all((folder / name).is_file() for name in FILES):
        write_tables(run_dir)
    return {name: pd.read_csv(folder / name) for name in FILES}

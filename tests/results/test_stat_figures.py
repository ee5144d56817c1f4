"""Figures of the statistics tables (results/stat_figures.py): the leaderboard is shaded by rank
group, not by mean, and every figure is drawn from a run's stats/ tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

from xaibench.results.stat_figures import agreement_heatmap, group_shades, leaderboard_groups, reliability_bars


def test_shades_follow_the_rank_groups_of_each_metric():
    groups = pd.DataFrame({"deletion": [1, 1, 2, 3], "insertion": [2, 1, 1, 1], "sparseness": [1, 1, 1, 1]},
                          index=["a", "b", "c", "d"])
    shades = group_shades(groups)
    assert shades["deletion"].tolist() == [0.0, 0.0, 0.5, 1.0]  # group 1 green … the last group red
    assert shades["insertion"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert shades["sparseness"].tolist() == [0.0] * 4  # one group: nobody is shown worse


def test_figures_are_written_from_the_tables(tmp_path):
    board = pd.DataFrame({"metric": ["m"] * 3 + ["k"] * 3, "explainer": ["a", "b", "random"] * 2,
                          "mean": [0.9, 0.8, 0.1, 3.0, 2.0, 1.0], "group": [1, 1, 2, 1, 2, 3], "rank": [1, 2, 3] * 2,
                          "partial": [False, True, False] * 2, "control": [False, False, True] * 2})
    agreement = pd.DataFrame([[1.0, -0.5], [-0.5, 1.0]], index=["m", "k"], columns=["m", "k"])
    reliability = pd.DataFrame({"metric": ["m", "k"], "split_half": [0.9, np.nan], "alpha": [0.4, -0.1],
                                "discrimination": [1.0, 0.5]})
    for path in (leaderboard_groups(board, tmp_path / "l.png"), agreement_heatmap(agreement, tmp_path / "a.png"),
                 reliability_bars(reliability, tmp_path / "r.png")):
        assert path is not None and path.stat().st_size > 1000
    assert leaderboard_groups(board.iloc[:0], tmp_path / "none.png") is None

"""Metric meta-evaluation (results/meta.py): agreement in each metric's own direction, the gap-free
block, split-half and Krippendorff's α on it, discrimination from the controls."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from xaibench.results.meta import agreement, complete_block, reliability
from xaibench.results.statistics import split_half
from xaibench.results.stats import paired_board


def long(metric: str, table: dict[str, np.ndarray]) -> pd.DataFrame:
    rows = [(e, metric, i, 0, float(v)) for e, vals in table.items() for i, v in enumerate(vals) if np.isfinite(v)]
    return pd.DataFrame(rows, columns=["explainer", "metric", "image", "target", "value"])


def test_agreement_is_kendall_tau_of_the_rankings_in_each_metrics_direction():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.01, size=(30, 4))
    level = np.array([4.0, 3.0, 2.0, 1.0])  # a > b > c > d on "up" (higher better)
    names = ["a", "b", "c", "d"]
    up = {n: level[i] + noise[:, i] for i, n in enumerate(names)}
    down = {n: -level[i] + noise[:, i] for i, n in enumerate(names)}  # the same order, lower better
    swapped = {n: level[[0, 2, 1, 3]][i] + noise[:, i] for i, n in enumerate(names)}  # b and c swapped
    scores = pd.concat([long("up", up), long("down", down), long("swap", swapped)])
    board = paired_board(scores, {"up": True, "down": False, "swap": True})
    tau = agreement(board)
    assert tau.loc["up", "down"] == pytest.approx(1.0)  # ignoring the direction would give −1
    assert tau.loc["up", "swap"] == pytest.approx(4 / 6)  # 5 concordant pairs, 1 discordant
    assert tau.loc["swap", "up"] == tau.loc["up", "swap"] and tau.loc["up", "up"] == 1.0


def test_agreement_leaves_out_the_controls():
    rng = np.random.default_rng(1)
    table = {n: v + rng.normal(0, 0.01, 20) for n, v in {"a": 3.0, "b": 2.0, "c": 1.0, "noise": 0.0}.items()}
    other = {n: v + rng.normal(0, 0.01, 20) for n, v in {"a": 1.0, "b": 2.0, "c": 3.0, "noise": -9.0}.items()}
    board = paired_board(pd.concat([long("m1", table), long("m2", other)]), {"m1": True, "m2": True}, controls={"noise"})
    assert agreement(board).loc["m1", "m2"] == pytest.approx(-1.0)  # with the control (last in both): τ_b = 0


def test_complete_block_takes_the_largest_gap_free_part():
    table = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0), "c": np.arange(20.0),
                          "d": np.r_[np.arange(10.0), [np.nan] * 10], "e": np.r_[np.arange(4.0), [np.nan] * 16]})
    block = complete_block(table)  # 20 × 3 = 60 beats 10 × 4 = 40 and 4 × 5 = 20
    assert block.shape == (20, 3) and list(block.columns) == ["a", "b", "c"]
    table["a"] = np.r_[np.arange(10.0), [np.nan] * 10]
    table["b"] = table["a"]
    block = complete_block(table)  # now 10 × 4 = 40 beats 20 × 1 (too few explainers)
    assert block.shape == (10, 4) and "e" not in block
    assert complete_block(table[["d", "e"]]).empty  # fewer than three explainers


def test_reliability_is_split_half_and_alpha_on_the_block_and_discrimination_from_the_board():
    krippendorff = pytest.importorskip("krippendorff")
    rng = np.random.default_rng(2)
    base = rng.normal(0, 1, size=(24, 1))
    real = {n: np.round(base + lv + rng.normal(0, 0.8, (24, 1)))[:, 0]  # rounded: tied ranks, unequal marginals
            for n, lv in {"a": 1.0, "b": 0.6, "c": 0.0}.items()}
    ctrl = {"rand": rng.normal(-3, 0.5, 24), "flat": np.full(24, 0.3) + rng.normal(0, 0.01, 24)}
    scores = long("m", {**real, **ctrl})
    board = paired_board(scores, {"m": True}, controls=set(ctrl))
    rel = reliability(scores, {"m": True}, set(ctrl), board, n_splits=50, seed=3).set_index("metric")
    values = np.stack([real[n] for n in ["a", "b", "c"]], axis=1)
    assert rel.loc["m", "n_images"] == 24 and rel.loc["m", "n_explainers"] == 3  # controls left out
    assert rel.loc["m", "split_half"] == pytest.approx(split_half(values, 50, 3))
    ranks = np.stack([pd.Series(-row).rank(method="average").to_numpy() for row in values])  # 1 = best, ties averaged
    assert rel.loc["m", "alpha"] == pytest.approx(krippendorff.alpha(reliability_data=ranks, level_of_measurement="ordinal"))
    assert rel.loc["m", "alpha"] != pytest.approx(krippendorff.alpha(reliability_data=ranks, level_of_measurement="interval"))
    b = board.set_index("explainer")
    beaten = sum(int(b.loc[n, "controls_beaten"]) for n in real)
    assert rel.loc["m", "control_pairs"] == 6 and rel.loc["m", "discrimination"] == pytest.approx(beaten / 6)
    assert 0 < beaten < 6  # everyone beats `rand`, not everyone `flat`


def test_reliability_of_a_metric_with_too_few_explainers_is_undefined():
    scores = long("m", {"a": np.arange(10.0), "b": np.arange(10.0) + 1})
    rel = reliability(scores, {"m": True})
    assert rel.loc[0, "n_explainers"] == 0 and math.isnan(rel.loc[0, "split_half"]) and math.isnan(rel.loc[0, "alpha"])

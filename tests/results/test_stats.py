"""The paired leaderboard (results/stats.py) on small synthetic per-image tables with known answers:
paired not unpaired, Holm applied, rank groups, partial explainers on shared images, effect sizes,
control margins, the per-class table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from xaibench.results.statistics import cohens_dz, paired_ci
from xaibench.results.stats import all_pairs, by_class, image_table, metric_board, paired_board, pairwise


def long(table: dict[str, np.ndarray], metric: str = "m", target=None) -> pd.DataFrame:
    """Per-image rows (explainer, metric, image, target, value) of {explainer: values}, NaN = not scored."""
    rows = []
    for name, values in table.items():
        for i, v in enumerate(values):
            if np.isfinite(v):
                rows.append((name, metric, i, 0 if target is None else target[i], float(v)))
    return pd.DataFrame(rows, columns=["explainer", "metric", "image", "target", "value"])


def board_of(table: dict[str, np.ndarray], higher_is_better: bool = True, controls=()) -> pd.DataFrame:
    return metric_board(pd.DataFrame(table), higher_is_better, controls).set_index("explainer")


def holm_by_hand(p: list[float]) -> list[float]:
    order = np.argsort(p)
    m, out, running = len(p), [0.0] * len(p), 0.0
    for step, i in enumerate(order):
        running = max(running, min(1.0, (m - step) * p[i]))
        out[i] = running
    return out


def test_groups_use_paired_tests_on_a_large_between_image_spread():
    """C is below A on every image by 1, inside an image-to-image spread of sd 5: paired, C is
    group 2; an unpaired test (Mann-Whitney) cannot tell them apart."""
    rng = np.random.default_rng(0)
    base = rng.normal(0, 5, size=30)
    a = base + 1.0 + rng.normal(0, 0.3, 30)
    b = base + 0.95 + rng.normal(0, 0.3, 30)
    c = base + rng.normal(0, 0.3, 30)
    board = board_of({"A": a, "B": b, "C": c})
    p = [sps.wilcoxon(a - b).pvalue, sps.wilcoxon(a - c).pvalue, sps.wilcoxon(b - c).pvalue]
    adjusted = holm_by_hand(p)
    assert adjusted[0] >= 0.05 and adjusted[1] < 0.05 and adjusted[2] < 0.05
    assert sps.mannwhitneyu(a, c).pvalue > 0.05  # unpaired: no difference
    assert board["group"].to_dict() == {"A": 1, "B": 1, "C": 2}
    assert board.loc["C", "p_leader"] == pytest.approx(adjusted[1])
    assert board["rank"].to_dict() == {"A": 1, "B": 2, "C": 3}


def test_holm_keeps_an_unadjusted_difference_in_the_leaders_group():
    """X is below L on 9 of 10 images: exact Wilcoxon p = 2·10/1024 < 0.05, but Holm over the
    three pairs makes it 0.059, so X stays in group 1 (no correction would put it in group 2)."""
    base = np.arange(10) * 10.0
    d = np.array([1, 2, 3, 4, -5, 6, 7, 8, 9, 10], dtype=float)
    lead, x = base + 100, base + 100 - d
    y = x + np.array([0.3, -0.2, 0.1, -0.4, 0.2, -0.1, 0.5, -0.6, 0.7, -0.8])  # close to X
    raw = sps.wilcoxon(lead - x).pvalue
    assert raw == pytest.approx(20 / 1024)
    pairs = pairwise(pd.DataFrame({"L": lead, "X": x, "Y": y}), True).set_index(["a", "b"])
    assert pairs.loc[("L", "X"), "p"] == pytest.approx(raw)
    assert pairs.loc[("L", "X"), "p_holm"] == pytest.approx(holm_by_hand(list(pairs["p"]))[0])
    assert pairs.loc[("L", "X"), "p_holm"] > 0.05
    board = board_of({"L": lead, "X": x, "Y": y})
    assert board.loc["X", "group"] == 1


def test_lower_is_better_is_signed_and_leader_is_the_lowest():
    rng = np.random.default_rng(1)
    base = rng.normal(0, 3, size=25)
    board = board_of({"low": base, "high": base + 1 + rng.normal(0, 0.1, 25)}, higher_is_better=False)
    assert board.loc["low", "group"] == 1 and board.loc["high", "group"] == 2
    assert board.loc["high", "vs_leader"] == pytest.approx(-np.mean(board.loc["high", "mean"] - board.loc["low", "mean"]))


def test_partial_explainer_is_compared_on_its_own_images_never_on_a_different_set():
    """P has only the 10 easy images (high values for everyone) and is below L on each of them:
    its own mean beats L's mean over all 40 images, but paired on the shared images it is worse."""
    rng = np.random.default_rng(2)
    easy = np.r_[np.full(10, 0.9), np.full(30, 0.2)] + rng.normal(0, 0.01, 40)
    lead = easy.copy()
    part = np.full(40, np.nan)
    part[:10] = easy[:10] - 0.05 - rng.normal(0, 0.005, 10)
    board = board_of({"L": lead, "P": part, "Q": easy - 0.01})
    assert board.loc["P", "mean"] > board.loc["L", "mean"]  # unpaired means would put P first
    assert bool(board.loc["P", "partial"]) and not board.loc["L", "partial"]
    assert board.loc["P", "n"] == 10 and board.loc["P", "n_leader"] == 10
    shared = part[:10] - lead[:10]
    assert board.loc["P", "vs_leader"] == pytest.approx(shared.mean())
    assert board.loc["P", "rank"] > board.loc["L", "rank"] and board.loc["L", "rank"] == 1


def test_only_fully_measured_explainers_open_groups():
    """P (3 images, a bit above L there) cannot be told from anyone on 3 images; if it opened
    group 1, W — worse than L on all 30 images — would join it."""
    rng = np.random.default_rng(5)
    lead = rng.normal(0, 1, 30)
    worse = lead - 1 - rng.uniform(0, 0.1, 30)
    part = np.full(30, np.nan)
    part[:3] = lead[:3] + 0.01
    board = board_of({"L": lead, "W": worse, "P": part})
    assert board.loc["P", "vs_leader"] > 0 and board.loc["P", "rank"] == 1
    assert board["group"].to_dict() == {"P": 1, "L": 1, "W": 2}


def test_effect_sizes_are_the_paired_ones():
    lead = np.array([5.0, 1.0, 9.0, 3.0, 7.0])
    other = lead - np.array([1.0, 2.0, 3.0, 2.0, 2.0])
    board = board_of({"L": lead, "O": other})
    d = other - lead
    assert board.loc["O", "vs_leader"] == pytest.approx(-2.0)
    assert board.loc["O", "cohens_d"] == pytest.approx(cohens_dz(d)) == pytest.approx(-2.0 / np.std(d, ddof=1))
    assert (board.loc["O", "vs_leader_low"], board.loc["O", "vs_leader_high"]) == pytest.approx(paired_ci(d))
    assert board.loc["L", "vs_leader"] == 0.0


def test_margin_over_the_best_control_and_the_flag():
    rng = np.random.default_rng(3)
    base = rng.normal(0, 2, size=40)
    table = {"real": base + 2 + rng.normal(0, 0.1, 40), "weak": base + 0.5 + rng.normal(0, 0.1, 40),
             "random": base + rng.normal(0, 0.1, 40), "edges": base + 1 + rng.normal(0, 0.1, 40)}
    board = board_of(table, controls={"random", "edges"})
    margin = (table["real"] - table["edges"]).mean()  # edges is the best control
    assert board.loc["real", "margin"] == pytest.approx(margin)
    assert board.loc["real", "beats_controls"] is True and board.loc["real", "controls_beaten"] == 2
    assert board.loc["weak", "beats_controls"] is False and board.loc["weak", "controls_beaten"] == 1
    assert board.loc["weak", "margin"] == pytest.approx((table["weak"] - table["edges"]).mean())
    assert board.loc["weak", "margin"] < 0
    assert board.loc["edges", "beats_controls"] is None and bool(board.loc["edges", "control"])


def test_beating_a_control_is_a_significant_test_not_a_higher_mean():
    """`lucky` is below `random` on 19 of 20 images and far above it on one: a higher mean, but the
    signed ranks say worse — it does not beat the control."""
    rng = np.random.default_rng(6)
    base = rng.normal(0, 2, size=20)
    lucky = base + np.r_[10.0, -0.1 - rng.uniform(0, 0.05, 19)]
    board = board_of({"lucky": lucky, "random": base}, controls={"random"})
    assert board.loc["lucky", "margin"] > 0 and sps.wilcoxon(lucky - base).pvalue < 0.05
    assert board.loc["lucky", "beats_controls"] is False and board.loc["lucky", "controls_beaten"] == 0
    # lucky leads by mean; random, better by ranks, is not significantly worse than it: group 1 too
    assert board.loc["lucky", "group"] == 1 and board.loc["random", "group"] == 1


def test_paired_board_covers_every_metric_with_its_direction():
    rng = np.random.default_rng(4)
    base = rng.normal(0, 1, 20)
    a, b = base + 1, base + rng.normal(0, 0.05, 20)
    scores = pd.concat([long({"a": a, "b": b}, "up"), long({"a": a, "b": b}, "down")])
    board = paired_board(scores, {"up": True, "down": False}).set_index(["metric", "explainer"])
    assert board.loc[("up", "a"), "group"] == 1 and board.loc[("down", "b"), "group"] == 1
    assert board.loc[("up", "b"), "group"] == 2 and board.loc[("down", "a"), "group"] == 2


def test_image_table_is_images_by_sorted_explainers_with_gaps():
    scores = pd.DataFrame([("b", "m", 7, 0, 1.0), ("a", "m", 7, 0, 2.0), ("b", "m", 3, 0, 3.0), ("a", "n", 3, 0, 9.0),
                           ("c", "m", 7, 0, 4.0), ("c", "m", 7, 0, 5.0)],  # a repeated pair keeps its first value
                          columns=["explainer", "metric", "image", "target", "value"])
    want = pd.DataFrame({"a": [np.nan, 2.0], "b": [3.0, 1.0], "c": [np.nan, 4.0]},
                        index=pd.Index([3, 7], name="image")).rename_axis(columns="explainer")
    pd.testing.assert_frame_equal(image_table(scores, "m"), want)


def test_a_board_from_the_pairs_table_equals_one_that_tests_its_own_pairs():
    # stats/ computes every pairwise test once (pairs.csv) and builds the board from it: each metric
    # must read its own rows — the two metrics here have opposite directions and opposite groups
    rng = np.random.default_rng(4)
    base = rng.normal(0, 1, 20)
    a, b, c = base + 1, base + rng.normal(0, 0.05, 20), base + 0.5
    scores = pd.concat([long({"a": a, "b": b, "c": c}, "up"), long({"a": a, "b": b, "c": c}, "down")])
    directions = {"up": True, "down": False}
    pairs = all_pairs(scores, directions)
    pd.testing.assert_frame_equal(paired_board(scores, directions, ["c"], pairs=pairs),
                                  paired_board(scores, directions, ["c"]))


def test_by_class_ranks_within_each_class():
    """A wins on average but loses class 1 entirely."""
    target = np.array([0, 0, 0, 1, 1, 1])
    a = np.array([0.9, 0.9, 0.9, 0.1, 0.1, 0.1])
    b = np.array([0.3, 0.3, 0.3, 0.4, 0.4, 0.4])
    c = np.array([np.nan, 0.5, np.nan, 0.2, np.nan, np.nan])
    table = by_class(long({"A": a, "B": b, "C": c}, target=target), {"m": True}).set_index(["class", "explainer"])
    assert table.loc[(0, "A"), "rank"] == 1 and table.loc[(1, "A"), "rank"] == 3
    assert table.loc[(1, "B"), "rank"] == 1 and table.loc[(1, "C"), "rank"] == 2
    assert table.loc[(1, "B"), "mean"] == pytest.approx(0.4) and table.loc[(1, "B"), "n"] == 3
    assert bool(table.loc[(0, "C"), "partial"]) and not table.loc[(0, "A"), "partial"]

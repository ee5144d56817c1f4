"""The metrics of issue 16 inside a run: every one scored for every explainer, the passes in run.json
follow their formulas, the stochastic ones give an image the same score whatever its batch."""

import json

import h5py
import numpy as np
import pandas as pd
import pytest

from xaibench import runner
from xaibench.metrics.wsol import max_box_acc

NEW_METRICS = [
    {"name": "faithfulness_correlation", "params": {"runs": 6, "subset_size": 20}},
    {"name": "aopc_morf", "params": {"patch_size": 8, "regions": 5}},
    {"name": "aopc_lerf", "params": {"patch_size": 8, "regions": 5}},
    {"name": "irof", "params": {"segments": 12}},
    {"name": "max_box_acc", "params": {"thresholds": 20}},
    {"name": "max_box_acc_v2", "params": {"thresholds": 20}},
    "mask_auc",
    {"name": "top_k_intersection", "params": {"k": 50}},
    {"name": "max_sensitivity", "params": {"samples": 3}},
    {"name": "infidelity", "params": {"samples": 4}},
    "random_logit",
]


@pytest.mark.slow
def test_new_metrics_in_a_run_are_batch_independent(tiny_config, tmp_path):
    cfg = {**tiny_config, "metrics": NEW_METRICS}
    cfg["dataset"] = {**cfg["dataset"], "limit": 8, "batch_size": 4}
    run_a = runner.run(cfg, out=tmp_path / "a", progress=False)
    cfg["dataset"] = {**cfg["dataset"], "batch_size": 3}
    run_b = runner.run(cfg, out=tmp_path / "b", progress=False)
    meta = json.loads((run_a / "run.json").read_text())
    costs = meta["costs"]
    assert costs["metric/faithfulness_correlation"]["forward_passes_per_image"] == 7.0  # 1 + runs
    assert costs["metric/aopc_morf"]["forward_passes_per_image"] == 6.0  # 1 + regions
    assert costs["metric/infidelity"]["forward_passes_per_image"] == 5.0  # 1 + samples
    assert costs["metric/max_box_acc"]["forward_passes_per_image"] == 0.0
    # the explainer's passes per re-explanation (gradcam: 1 F + 1 B per image; saliency alike)
    assert costs["metric/max_sensitivity"]["backward_passes_per_image"] == 3.0
    assert costs["metric/random_logit"]["backward_passes_per_image"] == 1.0
    summary = pd.read_csv(run_a / "summary.csv")
    for spec in NEW_METRICS:
        name = spec if isinstance(spec, str) else spec["name"]
        rows = summary[summary.metric == name]
        assert set(rows.explainer) == {"gradcam", "saliency"}, name
        assert np.isfinite(rows["mean"]).all() and (rows.n > 0).all(), name
    with h5py.File(run_a / "results.h5", "r") as ha, h5py.File(run_b / "results.h5", "r") as hb:
        for spec in NEW_METRICS:
            name = spec if isinstance(spec, str) else spec["name"]
            a, b = ha[f"scores/gradcam/{name}"][()], hb[f"scores/gradcam/{name}"][()]
            assert np.allclose(a, b, atol=1e-5, equal_nan=True), (name, a, b)
        hits = ha["curves/gradcam/max_box_acc"][()]
        assert hits.shape == (8, 20)
        acc, _ = max_box_acc(__import__("torch").from_numpy(hits))
        assert acc >= ha["scores/gradcam/max_box_acc"][()].mean()  # the best τ beats the sweep's mean
        v2_ious = ha["curves/gradcam/max_box_acc_v2"][()]
    # the dataset-level figures (not means of per-image values) are summary.csv's `:dataset` rows
    row = lambda m: summary[(summary.explainer == "gradcam") & (summary.metric == m)].iloc[0]  # noqa: E731
    assert row("max_box_acc:dataset")["mean"] == pytest.approx(acc) and row("max_box_acc:dataset")["n"] == 8
    v2 = np.mean([(v2_ious >= d).mean(0).max() for d in (0.3, 0.5, 0.7)])
    assert row("max_box_acc_v2:dataset")["mean"] == pytest.approx(v2)
    assert "MaxBoxAccV2" in row("max_box_acc_v2:dataset")["protocol"]

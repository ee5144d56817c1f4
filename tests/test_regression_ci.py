"""The project's own CI guard: run configs/ci/regression.yaml and check it against the committed
baseline with `xai compare --check`, the way users' CI jobs do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from xaibench.cli import app

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(600)  # 48 images at 128 px: 80-155 s measured on the shared 2-core machine
def test_regression_config_matches_committed_baseline(tmp_path):
    cli = CliRunner()
    res = cli.invoke(app, ["run", str(ROOT / "configs/ci/regression.yaml"), "--out", str(tmp_path / "run"), "-q",
                           "--set", f"output.dir={tmp_path}"])
    assert res.exit_code == 0, res.output
    res = cli.invoke(app, ["compare", str(tmp_path / "run"), "--check", str(ROOT / "configs/ci/baseline.csv")])
    assert res.exit_code == 0, res.output  # the default gate: n, protocols, 3 standard errors per metric
    base = pd.read_csv(ROOT / "configs/ci/baseline.csv").set_index(["explainer", "metric"])
    now = pd.read_csv(tmp_path / "run" / "summary.csv").set_index(["explainer", "metric"])
    assert (now.loc[base.index, "n"] == base["n"]).all()
    # the committed numbers, up to float noise
    assert np.allclose(now.loc[base.index, "mean"], base["mean"], rtol=0, atol=1e-4)


@pytest.mark.slow
def test_regression_gate_fails_a_run_on_three_images(tmp_path):
    """The old gate passed a run whose sample fell to 3 images; this one fails it."""
    cli = CliRunner()
    res = cli.invoke(app, ["run", str(ROOT / "configs/ci/regression.yaml"), "--out", str(tmp_path / "run"), "-q",
                           "--set", f"output.dir={tmp_path}", "--set", "dataset.limit=3", "--set", "dataset.batch_size=3"])
    assert res.exit_code == 0, res.output
    res = cli.invoke(app, ["compare", str(tmp_path / "run"), "--check", str(ROOT / "configs/ci/baseline.csv")])
    assert res.exit_code == 1 and "gradcam / deletion: n fell from 48 to 3" in res.output

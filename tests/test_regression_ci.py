"""The project's own CI guard: run configs/ci/regression.yaml and check it against the committed
baseline with `xai compare --check`, the way users' CI jobs do."""

from __future__ import annotations

from pathlib import Path

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
    res = cli.invoke(app, ["compare", str(tmp_path / "run"), "--check", str(ROOT / "configs/ci/baseline.csv"),
                           "--tolerance", "0.02"])
    assert res.exit_code == 0, res.output

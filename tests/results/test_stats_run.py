"""End to end on the tiny test model: a run with the three controls writes rank groups into
summary.csv, the stats/ tables and run.json's controls; `xai compare` shows groups, margins,
--by class and --meta from them."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from xaibench.cli import app

cli = CliRunner()


@pytest.mark.slow
def test_run_with_controls_then_compare(tiny_config, tmp_path):
    tiny_config["explainers"] = ["gradcam", "layercam", {"name": "saliency", "limit": 6}, "random", "center", "edges"]
    tiny_config["metrics"] += ["sparseness"]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config))
    run = tmp_path / "r"
    res = cli.invoke(app, ["run", str(cfg), "--out", str(run)])
    assert res.exit_code == 0, res.output
    closing = res.output[res.output.index("run folder:"):]  # the leaderboard with groups, then where the rest is
    assert "(1)" in closing and "margin over the best control" in closing and f"xai compare {run} --meta" in closing
    assert json.loads((run / "run.json").read_text())["controls"] == ["random", "center", "edges"]
    summary = pd.read_csv(run / "summary.csv")
    board = pd.read_csv(run / "stats" / "leaderboard.csv")
    merged = summary.merge(board, on=["explainer", "metric"], suffixes=("", "_board"))
    assert len(merged) == len(board) == 6 * 4  # 6 explainers × (deletion, insertion, sparseness, overall)
    assert (merged["group"] == merged["group_board"]).all() and (merged["mean"] - merged["mean_board"]).abs().max() < 1e-12
    sal = board[board.explainer == "saliency"]
    assert sal["partial"].all() and (sal["n"] == 6).all() and (sal["n_leader"] == 6).all()
    assert board[board.control]["margin"].isna().all() and board[~board.control]["margin"].notna().all()
    for name in ("pairs.csv", "by_class.csv", "agreement.csv", "reliability.csv"):
        assert len(pd.read_csv(run / "stats" / name)) > 0

    res = cli.invoke(app, ["compare", str(run), "--sort", "sparseness"])
    assert res.exit_code == 0, res.output
    assert "warning: fewer images than the other explainers" in res.output and "saliency (6)" in res.output
    assert "(1)" in res.output and "margin over the best control" in res.output
    lines = res.output.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("explainer"))
    assert lines[first + 1].split()[0] == board[(board.metric == "sparseness") & (board["rank"] == 1)].explainer.item()
    res = cli.invoke(app, ["compare", str(run), "--meta"])
    assert res.exit_code == 0 and "Kendall" in res.output and "split-half" in res.output
    assert "sparseness" in res.output and "insertion" in res.output
    res = cli.invoke(app, ["compare", str(run), "--by", "class", "-m", "deletion", "--format", "csv"])
    assert res.exit_code == 0 and res.output.startswith("metric,class,explainer,mean,n,rank,partial")
    res = cli.invoke(app, ["compare", str(run), "--by", "klass"])
    assert res.exit_code == 2 and "Valid: class" in res.output
    res = cli.invoke(app, ["compare", str(run), "-m", "delition"])
    assert res.exit_code == 2 and "deletion" in res.output
